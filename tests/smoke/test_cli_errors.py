"""User mistakes through the real CLI: a clear one-line-per-problem message, exit status 2, no traceback."""

import json

from cli_runner import cli


def sft_config(tmp_path, model, train, extra: str = "") -> str:
    path = tmp_path / "sft.yaml"
    path.write_text(
        f"recipe: sft\nname: s\noutput_dir: {tmp_path / 'runs'}\nmodel: {{path: {model}}}\n"
        f"data: {{train: {train}, max_length: 128}}\ntrain: {{max_steps: 2, batch_size: 4}}\n{extra}"
    )
    return str(path)


def test_misspelled_key_is_named_with_a_suggestion(tmp_path, tiny_model, world_dir):
    config = sft_config(tmp_path, tiny_model, world_dir / "sft.jsonl")
    out = cli("sft", config, "train.learning_rate=0.1", check=False)
    assert out.returncode == 2
    assert "train.learning_rate: unknown key" in out.stderr and "Traceback" not in out.stderr


def test_malformed_row_names_file_line_and_column(tmp_path, tiny_model):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n" + '{"prompt": "a" "completion": "b"}\n')
    out = cli("sft", sft_config(tmp_path, tiny_model, data), check=False)
    assert out.returncode == 2
    assert "bad.jsonl line 2, column 16" in out.stderr and "Traceback" not in out.stderr


def test_empty_field_names_row_and_field(tmp_path, tiny_model):
    data = tmp_path / "empty.jsonl"
    data.write_text("".join(json.dumps({"prompt": "hi", "completion": c}) + "\n" for c in ["ok", "", "fine"]))
    out = cli("sft", sft_config(tmp_path, tiny_model, data), check=False)
    assert out.returncode == 2 and "empty.jsonl:2" in out.stderr and "completion" in out.stderr


def test_wrong_kind_of_file(tmp_path, tiny_model, world_dir):
    out = cli("sft", sft_config(tmp_path, tiny_model, world_dir / "prefs.jsonl"), check=False)
    assert out.returncode == 2 and "preference" in out.stderr


def test_too_long_rows_stop_with_the_fix(tmp_path, tiny_model):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"prompt": "word " * 200, "completion": "ok"}) + "\n")
    out = cli("sft", sft_config(tmp_path, tiny_model, data), check=False)
    assert out.returncode == 2 and "max_length=128" in out.stderr and "truncation=left" in out.stderr
    cut = cli("sft", sft_config(tmp_path, tiny_model, data), "data.truncation=left", "name=cut")
    assert "cut from the left" in cut.stdout or "truncated" in cut.stdout


def test_missing_model_is_an_offline_error(tmp_path, world_dir):
    out = cli("sft", sft_config(tmp_path, tmp_path / "nope", world_dir / "sft.jsonl"), check=False)
    assert out.returncode == 2 and "alignkit tiny-model" in out.stderr and "Traceback" not in out.stderr


def test_validate_reports_the_data(tmp_path, tiny_model, world_dir):
    config = sft_config(tmp_path, tiny_model, world_dir / "sft.jsonl")
    out = cli("validate", config)
    assert "valid for `alignkit sft`" in out.stdout and "rows" in out.stdout


def test_convert_through_the_cli(tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parents[1] / "unit" / "fixtures" / "convert" / "hh_rlhf.jsonl"
    out = cli("convert", "hh-rlhf", str(fixture), str(tmp_path / "hh.jsonl"))
    rows = [json.loads(x) for x in (tmp_path / "hh.jsonl").read_text().splitlines()]
    assert rows and all({"prompt", "chosen", "rejected"} <= set(r) for r in rows)
    assert f"{len(rows)} preference rows" in out.stdout
    bad = cli("convert", "no-such-format", str(fixture), str(tmp_path / "x.jsonl"), check=False)
    assert bad.returncode == 2 and "hh-rlhf" in bad.stderr
