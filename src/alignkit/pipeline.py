"""`alignkit pipeline CONFIG`: run named stages in order, each a recipe (or `eval`) with its own settings, where
a later stage names an earlier stage's output as `{stage_name}`.

    name: hh
    output_dir: runs
    stages:
      - {name: sft, recipe: sft, config: sft.yaml}
      - {name: rm, recipe: reward, config: reward.yaml, overrides: {model.path: "{sft}"}}
      - {name: ppo, recipe: ppo, config: ppo.yaml, overrides: {model.path: "{sft}", ppo.reward_model: "{rm}"}}
      - {name: eval_ppo, recipe: eval, overrides: {policy: "{ppo}", baseline: "{sft}", prompts: data/eval.jsonl}}

Every stage writes into <output_dir>/<name>/<stage>/; `{stage}` is that stage's final/ model folder (for an
eval stage, its output folder). A stage whose output is complete is skipped, unless `--force` names it (or
`--force all`); a failed stage stops the pipeline with its name, and what earlier stages produced stays.
A stage that was cut off before its end is moved aside (to <stage>.incomplete-N) and run again from the start.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from alignkit.config import CONFIGS, Section, _read_yaml, load_config, validate_config
from alignkit.errors import AlignkitError

REFERENCE = re.compile(r"\{([A-Za-z0-9_.-]+)\}")


class StageSpec(Section):
    name: str = Field(description="the stage's name: its run folder, and how later stages refer to it")
    recipe: str = Field(description="a training command (sft, reward, dpo, ppo, ...) or eval")
    config: str | None = Field(None, description="the recipe's YAML config; relative to the pipeline file")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys; '{stage}' is replaced")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"stage name {name!r} may hold only letters, digits, '_', '.' and '-'")
        return name

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, recipe: str) -> str:
        if recipe != "eval" and recipe not in CONFIGS:
            raise ValueError(f"recipe {recipe!r}: choose one of {', '.join([*CONFIGS, 'eval'])}")
        return recipe


class PipelineConfig(Section):
    name: str = Field(description="folder under output_dir that holds every stage")
    output_dir: str = "runs"
    stages: list[StageSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_point_back(self) -> PipelineConfig:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}")
            for key, value in stage.overrides.items():
                for ref in REFERENCE.findall(str(value)):
                    if ref not in seen:
                        raise ValueError(f"stage {stage.name!r}, {key}: '{{{ref}}}' is not an earlier stage "
                                         f"(earlier: {', '.join(sorted(seen)) or 'none'})")
            seen.add(stage.name)
        return self


@dataclass
class StageResult:
    name: str
    output: Path
    seconds: float
    skipped: bool


def load_pipeline(path: str | Path) -> PipelineConfig:
    return validate_config(PipelineConfig, _read_yaml(Path(path)), source=str(path))


def run_pipeline(path: str | Path, force: list[str] = ()) -> list[StageResult]:
    cfg = load_pipeline(path)
    unknown = set(force) - {s.name for s in cfg.stages} - {"all"}
    if unknown:
        raise AlignkitError(f"--force {', '.join(sorted(unknown))}: no such stage in {path} "
                            f"(stages: {', '.join(s.name for s in cfg.stages)})")
    root = Path(cfg.output_dir) / cfg.name
    base = Path(path).parent
    outputs: dict[str, Path] = {}
    results = []
    for stage in cfg.stages:
        folder = root / stage.name
        outputs[stage.name] = output_of(stage, folder)
        if is_complete(stage, folder) and "all" not in force and stage.name not in force:
            print(f"[pipeline] {stage.name}: done before ({outputs[stage.name]}), skipped")
            results.append(StageResult(stage.name, outputs[stage.name], 0.0, True))
            continue
        set_aside(folder)
        print(f"[pipeline] {stage.name} ({stage.recipe}) ...")
        started = time.perf_counter()
        try:
            run_stage(stage, folder, base, outputs)
        except Exception as err:
            kept = ", ".join(r.name for r in results) or "nothing"
            raise AlignkitError(f"pipeline stage {stage.name!r} ({stage.recipe}) failed: {err}\n"
                                f"earlier stages are kept ({kept}); fix the stage and run the pipeline again "
                                "to continue from it") from err
        results.append(StageResult(stage.name, outputs[stage.name], time.perf_counter() - started, False))
    print("[pipeline] " + "; ".join(f"{r.name}: {'skipped' if r.skipped else f'{r.seconds:.0f} s'}"
                                    for r in results))
    return results


def output_of(stage: StageSpec, folder: Path) -> Path:
    return folder if stage.recipe == "eval" else folder / "final"


def is_complete(stage: StageSpec, folder: Path) -> bool:
    marker = "eval.json" if stage.recipe == "eval" else "config.json"
    return (output_of(stage, folder) / marker).is_file()


def set_aside(folder: Path) -> None:
    """A folder left by an unfinished or forced run moves to <name>.incomplete-N, so nothing is deleted."""
    if not folder.exists():
        return
    n = 1
    while folder.with_name(f"{folder.name}.incomplete-{n}").exists():
        n += 1
    folder.rename(folder.with_name(f"{folder.name}.incomplete-{n}"))
    print(f"[pipeline] moved the earlier, incomplete {folder} aside to {folder.name}.incomplete-{n}")


def resolve(value: Any, outputs: dict[str, Path]) -> Any:
    if not isinstance(value, str):
        return value
    return REFERENCE.sub(lambda m: str(outputs[m.group(1)]), value)


def run_stage(stage: StageSpec, folder: Path, base: Path, outputs: dict[str, Path]) -> None:
    overrides = {key: resolve(value, outputs) for key, value in stage.overrides.items()}
    if stage.recipe == "eval":
        from dataclasses import fields

        from alignkit.eval.run import EvalSettings, evaluate

        known = {f.name for f in fields(EvalSettings)}
        wrong = sorted(set(overrides) - known)
        if wrong or stage.config:
            raise AlignkitError(f"an eval stage takes `alignkit eval`'s options as overrides ({', '.join(sorted(known))})"
                                f"{'; unknown: ' + ', '.join(wrong) if wrong else ''}"
                                f"{'; it reads no config file' if stage.config else ''}")
        evaluate(EvalSettings(**{**overrides, "out": str(folder)}))
        return
    from importlib import import_module

    config = str(base / stage.config) if stage.config else None
    cfg = load_config(stage.recipe, config, **{key.replace(".", "__"): value for key, value in overrides.items()},
                      name=stage.name, output_dir=str(folder.parent))
    import_module(f"alignkit.recipes.{stage.recipe}").main(cfg)
