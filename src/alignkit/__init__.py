"""alignkit: align language models with preferences, from demonstrations to a measured win rate.

Importing the package is cheap: torch and transformers load only when a run starts.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alignkit.recipes.common import RunResult

__version__ = "0.1.0"

RECIPES = ("pretrain", "sft", "reward", "dpo", "kto", "ppo", "grpo", "prm", "cai")


def run(recipe: str, config: str | Path | None = None, *overrides: str, **settings: Any) -> RunResult:
    """Run a recipe from Python exactly as the CLI would: `alignkit.run("sft", "sft.yaml", train__lr=1e-4)`.

    Positional overrides use the CLI's dotted form ("train.lr=1e-4"); keyword settings use `__` for the dot.
    Returns the run folder and final metrics.
    """
    from alignkit.config import load_config

    cfg = load_config(recipe, config, list(overrides), **settings)
    return import_module(f"alignkit.recipes.{recipe}").main(cfg)
