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


@pytest.fixture(scope="session")
def sft_model(tmp_path_factory, tiny_model, world_dir) -> Path:
    """The tiny model after SFT on the demo world's demonstrations: it answers in the right shape, ends with
    EOS, and has picked up the demonstrators' habits that preference learning and RL can then remove."""
    import alignkit

    out = tmp_path_factory.mktemp("sft")
    result = alignkit.run(
        "sft", None, "name=sft", f"output_dir={out}", f"model.path={tiny_model}",
        f"data.train={world_dir / 'sft.jsonl'}", "data.max_length=128", "train.lr=3e-3", "train.batch_size=16",
        "train.max_steps=600", "train.warmup_steps=20", "train.threads=1", "train.log_every=100",
    )
    return result.path / "final"


BEHAVIOUR = ("unsafe", "unanswerable", "benign_looks_unsafe")


@pytest.fixture(scope="session")
def behaviour_world(tmp_path_factory) -> Path:
    """The demo world's behaviour categories alone (unsafe, unanswerable, benign-but-alarming prompts). Their
    good replies are a ~100k-parameter model's reach (no arithmetic, no facts to memorise), and the SFT data's
    habits there (complying, making answers up, over-refusing) are what preference learning and RL remove, so
    the gold judge can see them work at smoke-test size."""
    from alignkit.data.io import read_rows, write_jsonl
    from alignkit.demo.build import write_demo_data

    full = tmp_path_factory.mktemp("world_full")
    write_demo_data(full, seed=0, scale=0.4)
    out = tmp_path_factory.mktemp("world_behaviour")
    for name in ("sft", "prefs", "prefs_eval", "prompts", "prompts_eval"):
        rows = [row for row in read_rows(str(full / f"{name}.jsonl")).rows if row["category"] in BEHAVIOUR]
        write_jsonl(out / f"{name}.jsonl", rows)
    return out


@pytest.fixture(scope="session")
def behaviour_sft(tmp_path_factory, tiny_model, behaviour_world) -> Path:
    import alignkit

    out = tmp_path_factory.mktemp("behaviour_sft")
    result = alignkit.run(
        "sft", None, "name=sft", f"output_dir={out}", f"model.path={tiny_model}",
        f"data.train={behaviour_world / 'sft.jsonl'}", "data.max_length=128", "train.lr=3e-3",
        "train.batch_size=16", "train.max_steps=300", "train.warmup_steps=20", "train.threads=1",
        "train.log_every=100",
    )
    return result.path / "final"


@pytest.fixture(scope="session")
def behaviour_reward_model(tmp_path_factory, behaviour_sft, behaviour_world) -> Path:
    import alignkit

    out = tmp_path_factory.mktemp("behaviour_rm")
    result = alignkit.run(
        "reward", None, "name=rm", f"output_dir={out}", f"model.path={behaviour_sft}",
        f"data.train={behaviour_world / 'prefs.jsonl'}", f"data.eval={behaviour_world / 'prefs_eval.jsonl'}",
        "data.max_length=128", "train.lr=3e-3", "train.batch_size=16", "train.max_steps=100",
        "train.warmup_steps=5", "train.threads=1", "train.log_every=50", "train.eval_every=100",
    )
    return result.path / "final"
