"""Shared fixtures for end-to-end runs: a small demo world and a ~100k-parameter model, built once."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    from alignkit.demo.build import write_demo_data

    out = tmp_path_factory.mktemp("world")
    write_demo_data(out, seed=0, scale=0.1)
    return out


@pytest.fixture(scope="session")
def tiny_model(world_dir, tmp_path_factory) -> Path:
    from alignkit.models.tiny import make_tiny_model

    return make_tiny_model(world_dir / "pretrain.jsonl", tmp_path_factory.mktemp("m") / "tiny", size="100k",
                           vocab_size=512, seed=0)
