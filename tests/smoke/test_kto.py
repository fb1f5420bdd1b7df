"""`alignkit kto` on the demo world: unpaired rows and preference rows split into unpaired ones."""

import json

import alignkit


def test_kto_separates_desirable_from_undesirable(tmp_path, tiny_model, world_dir):
    def run(name, data, *extra):
        return alignkit.run(
            "kto", None, f"name={name}", f"output_dir={tmp_path}", f"model.path={tiny_model}",
            f"data.train={data}", "data.max_length=160", "train.batch_size=8", "train.threads=1",
            "train.lr=2e-3", "train.max_steps=40", *extra,
        )

    unpaired = run("kto", world_dir / "unpaired.jsonl", "train.log_every=1")
    lines = [json.loads(x) for x in (unpaired.path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 40 and all(x["loss"] == x["loss"] for x in lines)
    # the reward gap between desirable and undesirable completions grows as training goes on
    def gap(rows):
        chosen = sum(x["rewards/chosen_sum"] for x in rows) / max(sum(x["count/chosen"] for x in rows), 1e-9)
        rejected = sum(x["rewards/rejected_sum"] for x in rows) / max(sum(x["count/rejected"] for x in rows), 1e-9)
        return chosen - rejected

    assert gap(lines[-10:]) > gap(lines[:10])
    split = run("kto-prefs", world_dir / "prefs.jsonl", "train.max_steps=4")
    report = json.loads((split.path / "data_report.json").read_text())["train"]
    pairs = len((world_dir / "prefs.jsonl").read_text().splitlines())
    assert report["kept"] == 2 * pairs  # each pair became a desirable and an undesirable row
