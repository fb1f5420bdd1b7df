"""Shared fixtures for end-to-end runs: a small demo world and a ~100k-parameter model, built once."""

import os
import subprocess
import sys
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


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = True):
    """Run `python -m alignkit ...` as a user would, returning the completed process."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "alignkit", *args], capture_output=True, text=True, cwd=cwd,
                         env=full_env, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"alignkit {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out
