"""`alignkit pipeline`: stages run in order, later stages read earlier outputs as {name}, finished stages are
skipped, and a failing stage stops the run with its name while earlier outputs stay."""

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
