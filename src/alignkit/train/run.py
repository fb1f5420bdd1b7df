"""The run folder: resolved config with versions and git commit, metrics.jsonl, optional trackers.

Layout (DESIGN section 4): runs/<name>/config.yaml, metrics.jsonl, data_report.json, checkpoints/step-N/,
final/. Only the main process writes; every process may call these methods.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from alignkit.config import RunConfig
from alignkit.errors import AlignkitError
from alignkit.train.checkpoint import list_checkpoints
from alignkit.train.distributed import Dist

PACKAGES = ("alignkit", "torch", "transformers", "tokenizers", "datasets", "peft", "safetensors", "pydantic")


@dataclass
class Run:
    dir: Path
    recipe: str
    cfg: RunConfig
    dist: Dist
    trackers: list[Any] = field(default_factory=list)

    @classmethod
    def create(cls, recipe: str, cfg: RunConfig, dist: Dist) -> Run:
        run_dir = Path(cfg.output_dir) / cfg.name
        if dist.is_main:
            _check_fresh_or_resuming(run_dir, cfg.train.resume)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(config_yaml(recipe, cfg, world_size=dist.world_size))
        run = cls(dir=run_dir, recipe=recipe, cfg=cfg, dist=dist)
        run.trackers = _open_trackers(cfg, run_dir) if dist.is_main else []
        return run

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.dist.is_main:
            return
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        for tracker in self.trackers:
            tracker(step, metrics)

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, forget metrics logged after the checkpoint so the file reads as one clean run."""
        path = self.dir / "metrics.jsonl"
        if not self.dist.is_main or not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= after_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write_json(self, name: str, payload: dict) -> None:
        if self.dist.is_main:
            (self.dir / name).write_text(json.dumps(payload, indent=2) + "\n")


def config_yaml(recipe: str, cfg, **meta: Any) -> str:
    """A run's config.yaml: the resolved config, then `_meta` with the recipe, package versions, git commit and
    Python version (and any `meta` given), so the run says what produced it."""
    meta = {"recipe": recipe, "versions": package_versions(), "git_commit": git_commit(),
            "python": platform.python_version(), **meta}
    return yaml.safe_dump({**cfg.model_dump(mode="json"), "_meta": meta}, sort_keys=False)


def _check_fresh_or_resuming(run_dir: Path, resume: bool) -> None:
    has_history = (run_dir / "metrics.jsonl").exists() or bool(list_checkpoints(run_dir))
    if resume and not list_checkpoints(run_dir):
        raise AlignkitError(f"train.resume=true but {run_dir} has no checkpoint to resume from")
    if has_history and not resume:
        raise AlignkitError(
            f"run folder {run_dir} already holds a run: set train.resume=true to continue it, "
            f"or choose another name (name=...)"
        )


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the alignkit source tree, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _open_trackers(cfg: RunConfig, run_dir: Path) -> list:
    trackers = []
    for name in cfg.train.trackers:
        if name == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise AlignkitError("train.trackers has tensorboard, which is not installed: "
                                    "pip install 'alignkit[trackers]' or remove it") from None
            writer = SummaryWriter(str(run_dir / "tensorboard"))
            trackers.append(lambda step, m, w=writer: [w.add_scalar(k, v, step) for k, v in m.items()])
        elif name == "wandb":
            try:
                import wandb
            except ImportError:
                raise AlignkitError("train.trackers has wandb, which is not installed: "
                                    "pip install 'alignkit[trackers]' or remove it") from None
            wandb_run = wandb.init(name=cfg.name, config=cfg.model_dump(mode="json"), dir=str(run_dir))
            trackers.append(lambda step, m, r=wandb_run: r.log(m, step=step))
    return trackers
