"""`alignkit prm` and `alignkit best-of-n` end to end on the demo world and the ~100k-parameter model."""

import json
import random
import sys

import pytest
from cli_runner import cli

import alignkit
from alignkit.data.io import write_jsonl


def metrics_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stepwise_files(tmp_path_factory):
    """More stepwise rows of the same demo world than the fixture's 100, so a held-out accuracy of 900 steps
    is steady (the majority baseline is ~0.58 there)."""
    from alignkit.demo.build import stepwise_rows
    from alignkit.demo.world import World

    folder = tmp_path_factory.mktemp("steps")
    world = World(0)
    train = write_jsonl(folder / "train.jsonl", stepwise_rows(world, random.Random(1), 3000))
    held_out = write_jsonl(folder / "eval.jsonl", stepwise_rows(world, random.Random(2), 300))
    return train, held_out


@pytest.fixture(scope="module")
def prm_run(tmp_path_factory, tiny_model, stepwise_files):
    """A PRM trained through the CLI from the starter config (~200 steps, a few seconds)."""
    folder = tmp_path_factory.mktemp("prm")
    cli("init", "prm", str(folder))
    train, held_out = stepwise_files
    out = cli("prm", str(folder / "prm.yaml"), "name=prm", f"output_dir={folder}", f"model.path={tiny_model}",
              f"data.train={train}", f"data.eval={held_out}", "data.eval_fraction=0", "train.lr=3e-3",
              "train.max_steps=200", "train.eval_every=100", "train.threads=1", "train.save_every=0")
    return folder / "prm", out.stdout


def test_prm_step_accuracy_beats_the_majority_label(prm_run):
    run_dir, stdout = prm_run
    final = {k: v for line in metrics_of(run_dir) for k, v in line.items()}  # the last value of each key
    # 0.640-0.652 over seeds 0-5, against 0.581 for always answering the majority label
    assert final["eval/step_accuracy"] > final["eval/majority_accuracy"] + 0.03, final
    assert 0.5 < final["eval/majority_accuracy"] < 0.7
    assert "held-out step accuracy" in stdout
    assert json.loads((run_dir / "final" / "prm.json").read_text()) == {"step_separator": "\n"}


def test_prm_reads_each_step_at_its_last_token(tmp_path, tiny_model):
    """Each step's label is written in its last word only: a score read anywhere before that token is a
    coin flip, and labels paired with the wrong step are noise."""
    rng = random.Random(0)

    def rows(n):
        out = []
        for _ in range(n):
            labels = [rng.random() < 0.6 for _ in range(3)]
            steps = [f"{rng.randint(1, 9)} + {i} is {'fine' if ok else 'wrong'}"
                     for i, ok in enumerate(labels)]
            prompt = f"What is {rng.randint(1, 9)} + 1?"
            out.append({"prompt": prompt, "completions": steps, "labels": labels})
        return out

    write_jsonl(tmp_path / "train.jsonl", rows(1000))
    write_jsonl(tmp_path / "eval.jsonl", rows(200))
    result = alignkit.run("prm", None, "name=cue", f"output_dir={tmp_path}", f"model.path={tiny_model}",
                          f"data.train={tmp_path / 'train.jsonl'}", f"data.eval={tmp_path / 'eval.jsonl'}",
                          "train.lr=3e-3", "train.max_steps=150", "train.threads=1", "train.save_every=0")
    assert result.metrics["eval/step_accuracy"] > 0.95, result.metrics


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")
def test_two_processes_train_the_prm_like_one(tmp_path, tiny_model, stepwise_files):
    common = [f"output_dir={tmp_path}", f"model.path={tiny_model}", f"data.train={stepwise_files[0]}",
              "train.lr=3e-3", "train.max_steps=4", "train.batch_size=4", "train.save_every=0"]
    config = tmp_path / "prm.yaml"
    config.write_text("recipe: prm\nname: x\nmodel: {path: x}\ndata: {train: x}\n")
    cli("prm", str(config), *common, "name=one", "train.grad_accum=2", "train.threads=1")
    cli("prm", str(config), *common, "name=two", "--procs", "2")
    one, two = ([x["loss"] for x in metrics_of(tmp_path / name) if "loss" in x] for name in ("one", "two"))
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=1e-4)  # the gradients are synchronised: same updates


def best_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_best_of_n_with_a_prm_beats_the_first_sample(prm_run, tiny_model, world_dir, tmp_path):
    from alignkit.rewards.prm import ProcessReward

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join((world_dir / "prompts_eval.jsonl").read_text().splitlines(True)[:12]))
    out = tmp_path / "best.jsonl"
    final = prm_run[0] / "final"
    shown = cli("best-of-n", str(tiny_model), str(prompts), str(out), "--reward", str(final), "--n", "4",
                "--reduce", "product", "--gold", "--max-new-tokens", "24")
    rows = best_rows(out)
    assert len(rows) == 12 and all(len(r["scores"]) == 4 for r in rows)
    for r in rows:  # the chosen completion carries the best score of its prompt
        assert r["score"] == max(s for s in r["scores"] if s is not None)
        assert r["scores"][r["sample"]] == r["score"]
        assert 0.0 <= r["gold"] <= 1.0 and 0.0 <= r["gold_first"] <= 1.0
    chosen = sum(r["score"] for r in rows) / len(rows)
    first = sum(r["scores"][0] for r in rows) / len(rows)
    assert chosen > first
    assert "reward: chosen" in shown.stdout and "gold judge: chosen" in shown.stdout
    rescored = ProcessReward(final, "product")([r["prompt"] for r in rows], [r["completion"] for r in rows])
    assert rescored == pytest.approx([r["score"] for r in rows], abs=1e-5)


def test_best_of_n_with_a_reward_model(tmp_path, tiny_model, world_dir):
    rm = alignkit.run("reward", None, "name=rm", f"output_dir={tmp_path}", f"model.path={tiny_model}",
                      f"data.train={world_dir / 'prefs.jsonl'}", "data.max_length=160", "train.max_steps=5",
                      "train.batch_size=8", "train.threads=1", "train.save_every=0")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join((world_dir / "prompts_eval.jsonl").read_text().splitlines(True)[:8]))
    out = tmp_path / "best.jsonl"
    cli("best-of-n", str(tiny_model), str(prompts), str(out), "--reward", str(rm.path / "final"), "--n", "4",
        "--max-new-tokens", "16")
    rows = best_rows(out)
    scored = [r for r in rows if r["scores"][0] is not None]
    assert len(rows) == 8 and scored
    assert sum(r["score"] for r in scored) / len(scored) > sum(r["scores"][0] for r in scored) / len(scored)
    refused = cli("best-of-n", str(tiny_model), str(prompts), str(out), "--reward", str(rm.path / "final"),
                  "--reduce", "min", check=False)
    assert refused.returncode == 2 and "drop --reduce" in refused.stderr


def test_score_reads_a_prm_step_by_step(prm_run, tmp_path):
    """`alignkit score` with a PRM: every step's logit, their reduction as the score, null without a step."""
    from alignkit.errors import AlignkitError
    from alignkit.rewards.prm import reduce_last, reduce_min
    from alignkit.score import score_file

    prm = str(prm_run[0] / "final")
    rows = tmp_path / "rows.jsonl"
    write_jsonl(rows, [
        {"prompt": "What is 2 + 3 * 4?", "completion": "3 * 4 = 12\n2 + 12 = 14\nThe answer is 14."},
        {"prompt": "What is 1 + 1?", "completion": "\n \n"},  # no step to score
    ])
    summary = score_file([prm], str(rows), str(tmp_path / "min.jsonl"))
    scored = [json.loads(line) for line in (tmp_path / "min.jsonl").read_text().splitlines()]
    assert summary["rows"] == 2 and summary["unscored"] == 1
    steps = scored[0]["step_scores"]
    assert len(steps) == 3 and scored[0]["score"] == pytest.approx(reduce_min(steps))
    assert scored[1]["score"] is None and scored[1]["step_scores"] is None
    score_file([prm], str(rows), str(tmp_path / "last.jsonl"), reduce="last")
    last = json.loads((tmp_path / "last.jsonl").read_text().splitlines()[0])
    assert last["step_scores"] == steps and last["score"] == pytest.approx(reduce_last(steps))
    with pytest.raises(AlignkitError, match="score with it alone"):
        score_file([prm, prm], str(rows), str(tmp_path / "x.jsonl"))
