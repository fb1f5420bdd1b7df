"""`alignkit pipeline`: stages run in order, later stages read earlier outputs as {name}, finished stages are
skipped, and a failing stage stops the run with its name while earlier outputs stay."""

import json

import pytest
import yaml

from alignkit.errors import AlignkitError
from alignkit.pipeline import load_pipeline, run_pipeline


def write(tmp_path, stages, name="p"):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": name, "output_dir": str(tmp_path / "runs"), "stages": stages}))
    return path


def sft_stage(tiny_model, world_dir):
    return {"name": "sft", "recipe": "sft", "overrides": {
        "model.path": str(tiny_model), "data.train": str(world_dir / "sft.jsonl"), "data.max_length": 128,
        "train.max_steps": 3, "train.batch_size": 8, "train.threads": 1}}


def test_stages_chain_skip_when_done_and_rerun_when_forced(tmp_path, tiny_model, world_dir):
    eval_stage = {"name": "eval_sft", "recipe": "eval", "overrides": {
        "policy": "{sft}", "baseline": str(tiny_model), "prompts": str(world_dir / "prompts_eval.jsonl"),
        "limit": 5, "max_new_tokens": 8}}
    path = write(tmp_path, [sft_stage(tiny_model, world_dir), eval_stage])
    first = run_pipeline(path)
    assert [r.skipped for r in first] == [False, False]
    sft_final = tmp_path / "runs" / "p" / "sft" / "final"
    assert (sft_final / "config.json").is_file()
    assert (tmp_path / "runs" / "p" / "eval_sft" / "eval.json").is_file()
    again = run_pipeline(path)
    assert [r.skipped for r in again] == [True, True]
    forced = run_pipeline(path, force=["eval_sft"])
    assert [r.skipped for r in forced] == [True, False]
    assert (tmp_path / "runs" / "p" / "eval_sft.incomplete-1" / "eval.json").is_file()  # moved aside, not lost


def test_a_failing_stage_is_named_and_earlier_outputs_stay(tmp_path, tiny_model, world_dir):
    bad = {"name": "dpo", "recipe": "dpo", "overrides": {
        "model.path": "{sft}", "data.train": str(world_dir / "missing.jsonl"), "train.threads": 1}}
    path = write(tmp_path, [sft_stage(tiny_model, world_dir), bad])
    with pytest.raises(AlignkitError, match="(?s)stage 'dpo' \\(dpo\\) failed.*missing.jsonl.*earlier stages are kept \\(sft\\)"):
        run_pipeline(path)
    assert (tmp_path / "runs" / "p" / "sft" / "final" / "config.json").is_file()


def test_references_must_point_to_earlier_stages(tmp_path):
    path = write(tmp_path, [{"name": "a", "recipe": "sft", "overrides": {"model.path": "{b}"}},
                            {"name": "b", "recipe": "sft"}])
    with pytest.raises(AlignkitError, match="'\\{b\\}' is not an earlier stage"):
        load_pipeline(path)
    path = write(tmp_path, [{"name": "a", "recipe": "sftt"}])
    with pytest.raises(AlignkitError, match="recipe 'sftt'"):
        load_pipeline(path)


def test_tool_stages_inline_settings_and_run_references(tmp_path):
    """demo-data -> tiny-model -> sft (inline settings) -> eval -> report: the demo's kinds of stage, chained."""
    stages = [
        {"name": "data", "recipe": "demo-data", "settings": {"seed": 0, "scale": 0.05}},
        {"name": "tiny", "recipe": "tiny-model",
         "settings": {"texts_path": "{data}/pretrain.jsonl", "size": "100k", "vocab_size": 512}},
        {"name": "sft", "recipe": "sft", "settings": {
            "model": {"path": "{tiny}"}, "data": {"train": "{data}/sft.jsonl", "max_length": 128},
            "train": {"max_steps": 2, "batch_size": 8, "threads": 1}}},
        {"name": "eval_sft", "recipe": "eval", "settings": {
            "policy": "{sft}", "baseline": "{tiny}", "prompts": "{data}/prompts_eval.jsonl", "limit": 4,
            "max_new_tokens": 8}},
        {"name": "report", "recipe": "report", "settings": {"paths": ["{sft:run}", "{eval_sft}"]}},
        # a judge's training chats from gold-labelled pairs; a (hopeless) judge measured against gold
        {"name": "judge_data", "recipe": "convert",
         "settings": {"format": "judge-sft", "source": "{data}/prefs_gold.jsonl"}},
        {"name": "judge", "recipe": "judge", "settings": {
            "pairs": "{data}/prefs_eval.jsonl", "model": "{sft}", "bare": True, "against": "gold", "limit": 3,
            "max_tokens": 4, "parse_retries": 0}},
    ]
    path = write(tmp_path, stages)
    results = run_pipeline(path, overrides={"sft": {"train.max_steps": 3}})
    root = tmp_path / "runs" / "p"
    assert [r.output for r in results] == [root / "data", root / "tiny", root / "sft" / "final",
                                           root / "eval_sft", root / "report", root / "judge_data",
                                           root / "judge"]
    converted = json.loads((root / "judge_data" / "convert.json").read_text())
    gold_pairs = len((root / "data" / "prefs_gold.jsonl").read_text().splitlines())
    written = (root / "judge_data" / "data.jsonl").read_text().splitlines()
    assert converted["rows"] == 2 * gold_pairs == len(written)
    judged = json.loads((root / "judge" / "judge.json").read_text())["summary"]
    assert judged["pairs"] == 3 and judged["failures"]["questions"] == 6 and "gold" in judged
    assert (root / "data" / "manifest.json").is_file() and (root / "tiny" / "config.json").is_file()
    steps = [json.loads(line)["step"] for line in (root / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 3  # the override won over the inline max_steps: 2
    assert "win rate" in (root / "report" / "report.html").read_text().lower()
    assert all(r.skipped for r in run_pipeline(path))


def test_a_tool_stage_names_its_settings(tmp_path):
    path = write(tmp_path, [{"name": "data", "recipe": "demo-data", "settings": {"seed": 0, "scael": 0.1}}])
    with pytest.raises(AlignkitError, match="(?s)stage 'data'.*takes the settings out_dir|unknown: scael"):
        run_pipeline(path)
    with pytest.raises(AlignkitError, match="overrides for nope: no such stage"):
        run_pipeline(path, overrides={"nope": {"x": 1}})


def test_the_rlaif_demo_pipeline_is_the_demo_plus_its_stages(tmp_path):
    from alignkit.demo.pipeline import QUICK_RLAIF, bundled_config, rlaif_config

    demo = [s.name for s in load_pipeline(bundled_config()).stages]
    names = [s.name for s in load_pipeline(rlaif_config(tmp_path)).stages]
    assert names[: len(demo) - 1] == [n for n in demo if n != "report"] and names[-1] == "report_rlaif"
    assert set(QUICK_RLAIF) <= set(names) and {"judge", "ai_labels", "dpo_ai", "eval_dpo_ai"} <= set(names)


def test_the_bundled_demo_pipeline_is_valid():
    from alignkit.demo.pipeline import QUICK, bundled_config

    cfg = load_pipeline(bundled_config())
    names = [s.name for s in cfg.stages]
    assert set(QUICK) <= set(names)
    assert names[:4] == ["data", "tiny-model", "pretrain", "sft"] and names[-1] == "report"
