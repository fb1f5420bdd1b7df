from pathlib import Path

import pytest

from pydantic import BaseModel

from alignkit.config import CONFIGS, load_config, recipe_of
from alignkit.errors import AlignkitError
from alignkit.starters import starter_text, write_starter

MINIMAL = "recipe: sft\nname: t\nmodel: {path: m}\ndata: {train: d.jsonl}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    cfg = load_config("sft", write(tmp_path, MINIMAL), ["train.lr=3e-4", "data.max_length=64"])
    assert cfg.train.lr == 3e-4 and cfg.data.max_length == 64
    assert cfg.model.dtype == "auto" and cfg.model.trust_remote_code is False
    assert cfg.data.truncation == "error"


def test_keyword_overrides_use_double_underscore(tmp_path):
    cfg = load_config("sft", write(tmp_path, MINIMAL), train__batch_size=3)
    assert cfg.train.batch_size == 3


def test_a_runs_saved_config_reruns_it(tmp_path):
    from alignkit.train.run import config_yaml

    cfg = load_config("sft", write(tmp_path, MINIMAL), ["train.lr=3e-4"])
    saved = tmp_path / "config.yaml"
    saved.write_text(config_yaml("sft", cfg))
    assert "_meta:" in saved.read_text()
    assert load_config("sft", saved) == cfg


def test_misspelled_key_names_it_and_suggests(tmp_path):
    with pytest.raises(AlignkitError) as err:
        load_config("sft", write(tmp_path, MINIMAL + "train: {learning_rat: 1.0, batch_sise: 2}\n"))
    msg = str(err.value)
    assert "train.batch_sise: unknown key; did you mean 'batch_size'?" in msg
    assert "train.learning_rat: unknown key" in msg


def test_misspelled_override_and_top_level(tmp_path):
    with pytest.raises(AlignkitError, match="did you mean 'max_length'"):
        load_config("sft", write(tmp_path, MINIMAL), ["data.max_lenght=5"])
    with pytest.raises(AlignkitError, match="did you mean 'seed'"):
        load_config("sft", write(tmp_path, MINIMAL + "sed: 1\n"))


def test_bad_values_and_missing(tmp_path):
    with pytest.raises(AlignkitError, match="data.truncation"):
        load_config("sft", write(tmp_path, MINIMAL), ["data.truncation=middle"])
    with pytest.raises(AlignkitError, match="model: required"):
        load_config("sft", write(tmp_path, "name: t\ndata: {train: x}\n"))
    with pytest.raises(AlignkitError, match="not of the form"):
        load_config("sft", write(tmp_path, MINIMAL), ["train.lr"])


def test_yaml_error_has_line(tmp_path):
    with pytest.raises(AlignkitError, match="line 2"):
        load_config("sft", write(tmp_path, "name: t\nmodel: : bad\n"))


def test_wrong_recipe_file(tmp_path):
    with pytest.raises(AlignkitError, match="config for `alignkit sft`"):
        load_config("pretrain", write(tmp_path, MINIMAL))
    assert recipe_of(write(tmp_path, MINIMAL)) == "sft"


def test_eval_file_and_fraction_conflict(tmp_path):
    with pytest.raises(AlignkitError, match="not both"):
        load_config("sft", write(tmp_path, MINIMAL), ["data.eval=e.jsonl", "data.eval_fraction=0.1"])


def test_grpo_needs_a_reward_that_is_not_a_fallback(tmp_path):
    grpo = ("recipe: grpo\nname: t\nmodel: {path: m}\ndata: {train: p.jsonl}\n"
            "grpo: {rewards: [{function: exact_match}, {model: rm, fallback: true}]}\n")
    cfg = load_config("grpo", write(tmp_path, grpo))
    assert [r.fallback for r in cfg.grpo.rewards] == [False, True]
    with pytest.raises(AlignkitError, match="every reward has fallback: true"):
        load_config("grpo", write(tmp_path, grpo), ["grpo.rewards=[{model: rm, fallback: true}]"])


@pytest.mark.parametrize("recipe", sorted(CONFIGS))
def test_starters_validate_and_cover_every_key(recipe, tmp_path):
    path = write_starter(recipe, tmp_path)
    cfg = load_config(recipe, path)
    # every key of every section is written out in the starter, so users see all options
    text = starter_text(recipe)
    sections = [name for name in type(cfg).model_fields if isinstance(getattr(cfg, name), BaseModel)]
    assert {"model", "data"} <= set(sections)
    assert "train" in sections or recipe == "cai"  # cai samples models and trains none
    for section in sections:
        for key in type(getattr(cfg, section)).model_fields:
            assert f"  {key}:" in text, f"{recipe}.yaml lacks {section}.{key}"
    with pytest.raises(AlignkitError, match="exists"):
        write_starter(recipe, tmp_path)


@pytest.mark.parametrize("name", ["demo", "demo_rlaif"])
def test_demo_starters_are_whole_pipelines(name, tmp_path):
    from alignkit.pipeline import load_pipeline

    stages = [s.name for s in load_pipeline(write_starter(name, tmp_path)).stages]
    assert stages[:4] == ["data", "tiny-model", "pretrain", "sft"]  # runnable on its own, not a fragment
    assert ("judge" in stages) == (name == "demo_rlaif") and sum("report" in s for s in stages) == 1
