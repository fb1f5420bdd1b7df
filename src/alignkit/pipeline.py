"""`alignkit pipeline CONFIG`: run named stages in order, each a recipe (or a tool: eval, judge, convert,
demo-data, tiny-model, overopt, report) with its own settings, where a later stage names an earlier stage's
output as `{stage_name}`.

    name: hh
    output_dir: runs
    stages:
      - {name: sft, recipe: sft, config: sft.yaml}
      - {name: rm, recipe: reward, config: reward.yaml, overrides: {model.path: "{sft}"}}
      - name: ppo
        recipe: ppo
        config: ppo.yaml
        settings: {ppo: {reward_model: "{rm}", kl_coef: 0.1}}   # inline config, over the file
        overrides: {model.path: "{sft}"}                         # dotted keys, over both
      - {name: eval_ppo, recipe: eval, settings: {policy: "{ppo}", baseline: "{sft}", prompts: data/eval.jsonl}}

Every stage writes into <output_dir>/<name>/<stage>/; `{stage}` is that stage's final/ model folder (for a tool
stage and for cai, which writes data, its output folder) and `{stage:run}` the stage's run folder itself. A
stage whose output is complete is skipped, unless `--force` names it (or `--force all`); a failed stage stops
the pipeline with its name, and what earlier stages produced stays. A stage that was cut off before its end is
moved aside (to <stage>.incomplete-N) and run again from the start. `alignkit demo` is this runner on the
bundled configs/demo.yaml.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from alignkit.config import CONFIGS, Section, _read_yaml, validate_config
from alignkit.errors import AlignkitError

REFERENCE = re.compile(r"\{([A-Za-z0-9_.-]+)(:run)?\}")


class StageSpec(Section):
    name: str = Field(description="the stage's name: its run folder, and how later stages refer to it")
    recipe: str = Field(description="a training command (sft, reward, dpo, ppo, ...) or eval")
    config: str | None = Field(None, description="the recipe's YAML config; relative to the pipeline file")
    settings: dict[str, Any] = Field(default_factory=dict, description="inline config (nested), over `config`")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys, over both; '{stage}' is "
                                                                          "replaced in every value")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"stage name {name!r} may hold only letters, digits, '_', '.' and '-'")
        return name

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, recipe: str) -> str:
        if recipe not in TOOLS and recipe not in CONFIGS:
            known = dict.fromkeys([*CONFIGS, *TOOLS])  # cai is in both
            raise ValueError(f"recipe {recipe!r}: choose one of {', '.join(known)}")
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
            for key, value in [*flatten(stage.settings), *stage.overrides.items()]:
                for ref, _ in REFERENCE.findall(str(value)):
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


def run_pipeline(path: str | Path, force: list[str] = (), root: str | Path | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None) -> list[StageResult]:
    """Run the pipeline in `path`. `root` replaces <output_dir>/<name>; `overrides` adds dotted overrides per
    stage name ({"sft": {"train.epochs": 1.0}}), over the file's own."""
    cfg = load_pipeline(path)
    names = [s.name for s in cfg.stages]
    unknown = set(force) - set(names) - {"all"}
    if unknown:
        raise AlignkitError(f"--force {', '.join(sorted(unknown))}: no such stage in {path} "
                            f"(stages: {', '.join(names)})")
    for stage in cfg.stages:
        stage.overrides.update((overrides or {}).get(stage.name, {}))
    if set(overrides or {}) - set(names):
        raise AlignkitError(f"overrides for {', '.join(sorted(set(overrides) - set(names)))}: no such stage in "
                            f"{path} (stages: {', '.join(names)})")
    root = Path(root) if root is not None else Path(cfg.output_dir) / cfg.name
    base = Path(path).parent
    outputs: dict[str, Path] = {}
    results = []
    for stage in cfg.stages:
        folder = root / stage.name
        outputs[f"{stage.name}:run"] = folder
        outputs[stage.name] = output_of(stage, folder, outputs)
        if is_complete(stage, folder, outputs) and "all" not in force and stage.name not in force:
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


def output_of(stage: StageSpec, folder: Path, outputs: dict[str, Path] | None = None) -> Path:
    if stage.recipe == "overopt":  # its curve goes into the run it measures, where `alignkit report` looks
        run_dir = {**dict(flatten(stage.settings)), **stage.overrides}.get("run_dir")
        if run_dir is None:
            raise AlignkitError(f"stage {stage.name!r}: an overopt stage needs `run_dir`, the run to measure")
        return Path(resolve(run_dir, outputs or {}))
    return folder if stage.recipe in TOOLS else folder / "final"


def is_complete(stage: StageSpec, folder: Path, outputs: dict[str, Path] | None = None) -> bool:
    marker = TOOLS[stage.recipe].marker if stage.recipe in TOOLS else "config.json"
    return (output_of(stage, folder, outputs) / marker).is_file()


def set_aside(folder: Path) -> None:
    """A folder left by an unfinished or forced run moves to <name>.incomplete-N, so nothing is deleted."""
    if not folder.exists():
        return
    n = 1
    while folder.with_name(f"{folder.name}.incomplete-{n}").exists():
        n += 1
    folder.rename(folder.with_name(f"{folder.name}.incomplete-{n}"))
    print(f"[pipeline] moved the earlier, incomplete {folder} aside to {folder.name}.incomplete-{n}")


def flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """[(dotted key, leaf value)] of a nested dict."""
    items = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            items += flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def resolve(value: Any, outputs: dict[str, Path]) -> Any:
    """`value` with every '{stage}' (its output) and '{stage:run}' (its run folder) filled in, at any depth."""
    if isinstance(value, dict):
        return {key: resolve(v, outputs) for key, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outputs) for v in value]
    if not isinstance(value, str):
        return value

    def fill(match: re.Match) -> str:
        name, run = match.group(1), match.group(2)
        if name not in outputs:
            return match.group(0)
        return str(outputs[f"{name}:run"] if run else outputs[name])

    return REFERENCE.sub(fill, value)


def stage_settings(stage: StageSpec, base: Path) -> dict:
    """The stage's config file, then its inline settings over it, then its dotted overrides over both."""
    from alignkit.config import _set_dotted

    raw = _read_yaml(base / stage.config) if stage.config else {}
    for key, value in [*flatten(stage.settings), *stage.overrides.items()]:
        _set_dotted(raw, key, value)
    return raw


def run_stage(stage: StageSpec, folder: Path, base: Path, outputs: dict[str, Path]) -> None:
    raw = resolve(stage_settings(stage, base), outputs)
    if stage.recipe in TOOLS:
        TOOLS[stage.recipe].run(stage, raw, folder)
        return
    run_recipe(stage, raw, folder)


def run_recipe(stage: StageSpec, raw: dict, folder: Path) -> None:
    """The stage's recipe on its resolved config, with the run folder `folder`."""
    from importlib import import_module

    written_for = raw.pop("recipe", stage.recipe)
    if written_for != stage.recipe:
        raise AlignkitError(f"its config is for `alignkit {written_for}`, not `alignkit {stage.recipe}`")
    raw.update(recipe=stage.recipe, name=stage.name, output_dir=str(folder.parent))
    cfg = validate_config(CONFIGS[stage.recipe], raw, source=f"stage {stage.name!r}")
    import_module(f"alignkit.recipes.{stage.recipe}").main(cfg)


# ---------------------------------------------------------------- tool stages: commands that are not recipes


def call_with(stage: StageSpec, function, settings: dict, **fixed):
    """function(**settings, **fixed), with unknown or missing settings named against the function's signature."""
    check_settings(stage, function, settings, fixed)
    return function(**settings, **fixed)


def check_settings(stage: StageSpec, function, settings: dict, fixed: dict = {}) -> None:  # noqa: B006
    import inspect

    params = inspect.signature(function).parameters
    known = [name for name in params if name not in fixed]
    required = [name for name in known if params[name].default is inspect.Parameter.empty]
    unknown = sorted(set(settings) - set(known))
    missing = [name for name in required if name not in settings]
    if unknown or missing:
        raise AlignkitError(f"a {stage.recipe} stage takes the settings {', '.join(known)}"
                            f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}"
                            f"{'; missing: ' + ', '.join(missing) if missing else ''}")


def run_eval(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.eval.run import EvalSettings, evaluate

    evaluate(call_with(stage, EvalSettings, settings, out=str(folder)))


def run_judge(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.eval.judge_run import judge_stage

    summary = call_with(stage, judge_stage, settings, out_dir=folder)
    gold = summary.get("gold", {}).get("agreement")
    print(f"[pipeline] {stage.name}: {summary['judged']:,} of {summary['pairs']:,} pairs judged"
          + ("" if gold is None else f", agreement with gold {gold:.1%}"))


def run_convert(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.data.convert import convert_stage

    call_with(stage, convert_stage, settings, out_dir=folder)


def run_demo_data(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.demo.build import write_demo_data

    call_with(stage, write_demo_data, settings, out_dir=folder)


def run_tiny_model(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.models.tiny import make_tiny_model

    call_with(stage, make_tiny_model, settings, out_dir=folder)


def run_overopt(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.eval.overopt import overoptimization_points, write_overoptimization

    check_settings(stage, overoptimization_points, settings)
    write_overoptimization(**settings)


def run_report(stage: StageSpec, settings: dict, folder: Path) -> None:
    from alignkit.eval.report import build_report

    call_with(stage, build_report, settings, out=folder / "report.html")


@dataclass(frozen=True)
class Tool:
    marker: str  # the file whose presence means the stage is complete
    run: Any


TOOLS = {
    # cai is a recipe whose output is data, not a model: {stage} is its run folder ({stage}/sft.jsonl,
    # {stage}/prefs.jsonl), finished once summary.json is written.
    "cai": Tool("summary.json", run_recipe),
    "eval": Tool("eval.json", run_eval),
    # {stage}/judge.json, and {stage}/prefs.jsonl with write_prefs: true (AI-labelled pairs)
    "judge": Tool("judge.json", run_judge),
    "convert": Tool("convert.json", run_convert),  # {stage}/data.jsonl
    "demo-data": Tool("manifest.json", run_demo_data),
    "tiny-model": Tool("config.json", run_tiny_model),
    "overopt": Tool("overoptimization.json", run_overopt),
    "report": Tool("report.html", run_report),
}
