"""Atomic checkpoints: everything needed to continue a run bit for bit, or nothing at all.

A checkpoint is a folder `checkpoints/step-N/` holding the trainable weights (safetensors), the optimizer
state (a tensors-only torch file, read back with weights_only=True), and `state.json` (step, RNG states,
metrics so far). It is written into a hidden temp folder, every file fsynced, then renamed into place, so a
crash or kill mid-write leaves the previous checkpoint intact and the half-written one invisible.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from alignkit.errors import AlignkitError

WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (all of them in full fine-tuning, the adapters with LoRA)."""
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, keep_last: int
) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    for stale in root.glob(".tmp-step-*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    tmp.mkdir()
    save_file(trainable_state(model), tmp / WEIGHTS)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    full_state = {**state, "step": step, "rng": rng_state()}
    (tmp / STATE).write_text(json.dumps(full_state))
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    if final.exists():
        _discard(final)
    os.replace(tmp, final)
    _fsync(root)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        _discard(old)
    return final


def _discard(path: Path) -> None:
    """Rename out of sight first (atomic), then delete: a kill mid-delete never leaves a half checkpoint visible."""
    trash = path.parent / f".tmp-step-trash-{path.name}-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp folders of interrupted writes are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore weights, optimizer and RNG; return the saved state (step, metrics, ...)."""
    weights = load_file(Path(path) / WEIGHTS)
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    unknown = [n for n in weights if n not in params]
    if missing or unknown:
        raise AlignkitError(
            f"checkpoint {path} does not fit this model ({len(missing)} trainable weights missing, "
            f"{len(unknown)} unknown, e.g. {(missing + unknown)[:3]}): was the model or LoRA setting changed?"
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(Path(path) / OPTIMIZER, map_location="cpu", weights_only=True))
    state = json.loads((Path(path) / STATE).read_text())
    set_rng_state(state["rng"])
    return state


def rng_state() -> dict:
    state = {"python": _jsonable(random.getstate()), "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
