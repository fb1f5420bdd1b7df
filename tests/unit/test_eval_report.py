"""alignkit report on hand-made folders: a page that loads nothing from outside, escapes every user string,
pairs an evaluation with the run it evaluated, and a markdown summary that holds the win rate."""

import base64
import json
import re
import subprocess
import sys

import pytest

from alignkit.errors import AlignkitError
from alignkit.eval import plots
from alignkit.eval.report import build_report, model_name, overoptimization_plot, pick_samples, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = '<script>alert("x")</script><img src="https://evil.example/p.png"> & more'


def write_run(folder, rows, recipe="dpo", cut_last_line=False):
    folder.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "metrics.jsonl").write_text(text + ('{"step": 99, "lo' if cut_last_line else ""))
    (folder / "config.yaml").write_text(f"name: {folder.name}\n_meta:\n  recipe: {recipe}\n")


def eval_json(policy, baseline="runs/sft/final"):
    side = {"gold_score": 0.4, "mean_reward": None, "mean_chars": 30.0, "mean_tokens": 9.0,
            "no_eos_rate": 0.0, "distinct_1": 0.2, "distinct_2": 0.3, "list_overuse_rate": 0.0,
            "refusal_rate": 0.1,
            "reward_vs_length": None, "gold_vs_length": {"pearson": 0.1, "spearman": 0.2}, "demo": None}
    return {"policy": str(policy), "baseline": baseline, "prompts": "p.jsonl", "judge": "gold",
            "num_prompts": 100, "samples_per_prompt": 1,
            "win_rate": {"win_rate": 0.62, "ci_low": 0.583, "ci_high": 0.654, "level": 0.95, "wins": 40,
                         "ties": 44, "losses": 16, "units": 100},
            "length_controlled": {"win_rate": 0.582, "theta": 0.3, "phi": -0.68, "length_scale": 20.0},
            "position_swap": {"swapped": False, "position_bias_rate": None, "first_position_rate": None},
            "per_category": {"<b>cat</b>": {"win_rate": 0.62, "ci_low": 0.583, "ci_high": 0.654,
                                            "level": 0.95, "wins": 40, "ties": 44, "losses": 16,
                                            "units": 100}},
            "kl": {"reference": baseline, "mean": 22.2, "per_token": 2.03},
            "responses": {"policy": side, "baseline": {**side, "gold_score": 0.1}}}


def write_eval(folder, policy, samples):
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps(eval_json(policy)))
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


@pytest.fixture
def folders(tmp_path):
    run = tmp_path / "runs" / "dpo"
    write_run(run, [{"step": s, "loss": 1.0 / s, "rewards/margins": 0.1 * s, "eval/loss": float("nan")}
                    for s in range(1, 6)] + [{"step": 5, "eval/loss": 0.5}], cut_last_line=True)
    samples = [{"prompt": HOSTILE, "category": "x", "sample": 0, "policy": "P" + HOSTILE, "baseline": "B & b",
                "verdict": "policy", "policy_gold": 1.0, "baseline_gold": 0.0},
               {"prompt": "q2", "category": "y", "sample": 0, "policy": "same", "baseline": "same",
                "verdict": "tie"}]
    write_eval(tmp_path / "eval" / "dpo", run / "final", samples)
    points = [{"step": s, "kl": kl, "proxy": kl, "gold": g}
              for s, kl, g in [(0, 0, 0.3), (5, 1, 0.5), (9, 4, 0.2)]]
    (run / "overoptimization.json").write_text(json.dumps(points))
    return tmp_path


def test_page_loads_nothing_from_outside_and_embeds_every_plot(folders, tmp_path):
    out = tmp_path / "out" / "report.html"
    report = build_report([folders / "runs" / "dpo", folders / "eval" / "dpo"], out)
    page = report.html.read_text()
    for attribute in re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I):
        is_relative = not re.match(r"^([a-z][a-z0-9+.-]*:|//)", attribute, re.I)  # no scheme, no //host
        assert attribute.startswith("data:") or is_relative, attribute
    assert "url(" not in page.lower() and "@import" not in page and "<link" not in page
    assert "<script" not in page.lower()  # the hostile prompt is text, not a tag
    names = sorted(p.name for p in report.plots)
    assert names == ["dpo-curves.png", "dpo-overoptimization.png", "win_rates.png"]
    for path in report.plots:
        png = path.read_bytes()
        assert png.startswith(PNG_MAGIC) and path.parent == tmp_path / "out" / "plots"
        assert base64.b64encode(png).decode() in page  # the HTML alone is complete
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temp files behind


def test_user_strings_are_escaped(folders, tmp_path):
    page = build_report([folders], tmp_path / "r.html").html.read_text()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=&quot;https://evil.example/p.png&quot;&gt; &amp; more" in page
    assert "B &amp; b" in page and "&lt;b&gt;cat&lt;/b&gt;" in page and "<b>cat</b>" not in page


def test_summary_holds_the_win_rate_and_pairs_the_evaluation_with_its_run(folders, tmp_path):
    report = build_report([folders], tmp_path / "r.html")  # a folder above runs/ and eval/ is searched
    assert report.markdown.read_text() == report.summary
    assert "| dpo | sft | gold | 62.0% [58.3%, 65.4%] | 58.2% | 40 / 44 / 16 | 22.20 |" in report.summary
    assert "| dpo | dpo | 5 | 1.000 -> 0.200 | 0.500 |" in report.summary  # the cut line (step 99) is dropped
    assert "gold reward peaks at step 5 (sqrt KL 1.00, gold 0.500)" in report.summary
    assert report.summary.startswith("## alignkit report: 1 run(s)")  # run and its evaluation: one entry
    assert any("training run (dpo)" in line for line in report.found)
    assert any("evaluation of" in line and "judge: gold" in line for line in report.found)


def test_default_out_is_inside_the_one_folder_given(folders):
    report = build_report([folders / "eval" / "dpo"])
    assert report.html == folders / "eval" / "dpo" / "report.html"
    assert report.markdown == folders / "eval" / "dpo" / "report.md"
    assert "win_rates.png" in [p.name for p in report.plots]


def test_position_bias_shows_when_the_judge_was_asked_both_ways(tmp_path):
    write_eval(tmp_path / "e", "runs/x/final", [])
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    page = build_report([tmp_path / "e"]).html.read_text()
    assert "position bias" not in page  # a position-free judge: no column
    result["position_swap"] = {"swapped": True, "position_bias_rate": 0.125, "first_position_rate": 0.05}
    (tmp_path / "e" / "eval.json").write_text(json.dumps(result))
    page = build_report([tmp_path / "e"]).html.read_text()
    assert "<th>position bias</th>" in page and "<td class=\"num\">12.5%</td>" in page


def test_errors_name_the_folder_and_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignkitError, match=r"empty holds no metrics.jsonl.*training run folder"):
        build_report([tmp_path / "empty"])
    bad = tmp_path / "bad"
    write_run(bad, [{"step": 1, "loss": 1.0}])
    (bad / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(AlignkitError, match=r"metrics.jsonl line 2"):
        build_report([bad])
    with pytest.raises(AlignkitError, match=r"ending in .html"):
        build_report([tmp_path], tmp_path / "report.pdf")


def test_a_run_killed_mid_line_keeps_its_complete_lines(tmp_path):
    write_run(tmp_path / "r", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], cut_last_line=True)
    assert [row["step"] for row in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2]


def test_curve_series_groups_recipe_keys_and_skips_non_finite_values():
    rows = [{"step": 1, "loss": 1.0, "objective/kl": 0.0, "objective/scores": 0.1},
            {"step": 2, "loss": float("nan"), "objective/kl": 0.5, "objective/scores": 0.3, "lr": 1e-5}]
    panels = plots.curve_series(rows)
    assert panels == {"loss": {"loss": ([1], [1.0])}, "reward": {"objective/scores": ([1, 2], [0.1, 0.3])},
                      "KL": {"objective/kl": ([1, 2], [0.0, 0.5])}}
    assert plots.moving_average([1, 2, 3, 4], 2) == [1.0, 1.5, 2.5, 3.5]


def test_overoptimization_plot_writes_a_png_and_checks_its_points(tmp_path):
    points = [{"step": 0, "kl": 0.0, "proxy": 0.1, "gold": 0.3},
              {"step": 10, "kl": 2.0, "proxy": 0.9, "gold": 0.2}]
    path = overoptimization_plot(points, tmp_path / "o" / "curve.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(AlignkitError, match=r"item 1: 'gold' must be a finite number"):
        overoptimization_plot([points[0], {"step": 10, "kl": 2.0, "proxy": 0.9}], tmp_path / "x.png")
    with pytest.raises(AlignkitError, match="non-empty list"):
        overoptimization_plot([], tmp_path / "x.png")


def test_model_names_and_sample_choice():
    assert model_name("runs/dpo/final") == "dpo"
    assert model_name("runs/ppo/checkpoints/step-40") == "ppo@step-40"
    assert model_name("models/base") == "base"
    verdicts = ["tie", "tie", "baseline", "policy", "policy", "tie"]
    samples = [{"verdict": v, "i": i} for i, v in enumerate(verdicts)]
    assert [s["i"] for s in pick_samples(samples, k=4)] == [3, 4, 2, 0]  # wins, losses, then ties


def test_importing_the_report_module_does_not_import_matplotlib():
    code = "import sys, alignkit.eval.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
