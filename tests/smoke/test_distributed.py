"""Two processes under torchrun (gloo on CPU) train like one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest


def losses(run_dir):
    return [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)]


def run(args, env=None):
    out = subprocess.run(args, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")
def test_two_process_sft_matches_one_process(tmp_path, tiny_model, world_dir):
    common = [f"output_dir={tmp_path}", f"model.path={tiny_model}", f"data.train={world_dir / 'sft.jsonl'}",
              "data.max_length=128", "train.lr=3e-3", "train.max_steps=8", "train.warmup_steps=2",
              "train.batch_size=4"]
    config = tmp_path / "sft.yaml"
    config.write_text("recipe: sft\nname: x\nmodel: {path: x}\ndata: {train: x}\n")
    run([sys.executable, "-m", "alignkit", "sft", str(config), *common, "name=one", "train.grad_accum=2"])
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "alignkit", "sft", str(config), *common, "name=two", "train.grad_accum=1"])
    # the CLI's --procs shorthand starts torchrun itself
    run([sys.executable, "-m", "alignkit", "sft", str(config), *common, "name=three", "--procs", "2"])
    one, two, three = (losses(tmp_path / name) for name in ("one", "two", "three"))
    assert len(one) == len(two) == 8 and two == three
    for a, b in zip(one, two):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (one, two)
    meta = (tmp_path / "two" / "config.yaml").read_text()
    assert "world_size: 2" in meta
