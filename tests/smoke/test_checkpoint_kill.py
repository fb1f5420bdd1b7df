"""SIGKILL at a random moment while checkpoints are being written: every visible checkpoint still loads."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from alignkit.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

WRITER = textwrap.dedent(
    """
    import sys, torch
    from alignkit.train.checkpoint import save_checkpoint
    model = torch.nn.Linear(1024, 2048)  # 8 MB of weights, so each write takes a while
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 1024)).sum().backward()
    optimizer.step()
    for step in range(1, 10_000):
        with torch.no_grad():
            model.weight.fill_(float(step))
        save_checkpoint(sys.argv[1], step, model, optimizer, {"plan": {}}, keep_last=3)
        print(step, flush=True)
    """
)


def test_kill_during_writes_leaves_loadable_checkpoints(tmp_path):
    for delay in (0.8, 1.3, 1.9):
        run_dir = tmp_path / f"run-{delay}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "1"  # at least one checkpoint is complete
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        found = list_checkpoints(run_dir)
        assert found, "the kill must not hide the checkpoints already written"
        model = torch.nn.Linear(1024, 2048)
        optimizer = torch.optim.AdamW(model.parameters())
        for path in found:
            state = load_checkpoint(path, model, optimizer)
            assert model.weight[0, 0].item() == float(state["step"])  # the weights belong to that step
        # the next save sweeps away the half-written folder the kill left behind
        save_checkpoint(run_dir, 99_999, model, optimizer, {"plan": {}}, keep_last=3)
        assert not list((run_dir / "checkpoints").glob(".tmp-*"))
