"""`alignkit validate CONFIG`: check a config and its data without training, and print what was found."""

from __future__ import annotations

from pathlib import Path

from alignkit.config import ModelSettings, load_config, recipe_of

DATA_KINDS = {"pretrain": ["text"], "sft": ["sft"], "reward": ["preference", "ranked"], "dpo": ["preference", "ranked"],
              "kto": ["unpaired", "preference"], "prm": ["stepwise"],
              "ppo": ["prompt"], "grpo": ["prompt"], "cai": ["prompt"]}
# The data settings that name files; cai reads one file of prompts.
SPLITS = {"cai": ("prompts",)}


def validate_config_and_data(config: Path, overrides: list[str]) -> int:
    """Print the data report for every data file the config names; return the number of problems."""
    from alignkit.data.doctor import data_report, format_report
    from alignkit.data.io import read_rows
    from alignkit.data.schema import detect_kind, validate_rows
    from alignkit.models.load import load_tokenizer

    recipe = recipe_of(config)
    cfg = load_config(recipe, config, overrides)
    print(f"config {config}: valid for `alignkit {recipe}`")
    # cai's model section names a folder to sample and nothing else
    tokenizer = load_tokenizer(cfg.model if isinstance(cfg.model, ModelSettings)
                               else ModelSettings(path=cfg.model.path))
    truncation = getattr(cfg.data, "truncation", "drop")
    problems = 0
    for split in SPLITS.get(recipe, ("train", "eval")):
        source = getattr(cfg.data, split)
        if source is None:
            continue
        rows = read_rows(source)
        kind = detect_kind(rows.columns, rows.source)
        if kind not in DATA_KINDS[recipe]:
            validate_rows(rows, DATA_KINDS[recipe])  # raises: names the kind the recipe needs
        max_length = getattr(cfg.data, "max_length", None) or cfg.data.max_prompt_length  # RL: prompts only
        report = data_report(rows, kind, tokenizer, max_length, truncation)
        print(f"\n[{split}] {source}")
        print(format_report(report))
        problems += report.get("problems", 0)
    return problems
