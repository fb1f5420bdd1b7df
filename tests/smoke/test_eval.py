"""`alignkit eval` end to end on the tiny model: a model against itself is an exact tie with zero KL; against the
world's best replies, judged by a reward model, the verdicts follow the reward and the gold judge sees the gap."""

import json

import pytest
from cli_runner import cli

import alignkit
from alignkit.demo.world import World


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_model_against_itself_ties_exactly_with_zero_kl(tmp_path, tiny_model, world_dir):
    out = tmp_path / "self"
    printed = cli("eval", str(tiny_model), str(world_dir / "prompts_eval.jsonl"), "--baseline", str(tiny_model),
                  "--reference", str(tiny_model), "--limit", "30", "--max-new-tokens", "24", "--out", str(out))
    result = json.loads((out / "eval.json").read_text())
    assert result["win_rate"]["win_rate"] == 0.5 and result["win_rate"]["ties"] == 30  # greedy: same texts
    assert result["win_rate"]["ci_low"] < 0.5 < result["win_rate"]["ci_high"]
    assert result["length_controlled"]["win_rate"] == pytest.approx(0.5)
    assert result["kl"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert result["judge"] == "gold" and result["position_swap"]["swapped"] is False
    assert sum(c["units"] for c in result["per_category"].values()) == 30
    policy = result["responses"]["policy"]
    for key in ("mean_chars", "mean_tokens", "no_eos_rate", "distinct_1", "list_overuse_rate", "refusal_rate",
                "gold_score", "demo"):
        assert policy[key] is not None, key
    assert set(policy["demo"]) == {"over_refusal_rate", "sycophancy_rate", "unsafe_refusal_rate", "fabrication_rate"}
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == 30 and all(s["policy"] == s["baseline"] and s["verdict"] == "tie" for s in samples)
    assert "win rate            0.500" in printed.stdout


def test_reward_model_judge_against_reference_responses(tmp_path, tiny_model, world_dir):
    rm = alignkit.run(
        "reward", None, "name=rm", f"output_dir={tmp_path}", f"model.path={tiny_model}",
        f"data.train={world_dir / 'prefs.jsonl'}", "data.max_length=160", "train.max_steps=5",
        "train.batch_size=8", "train.threads=1",
    ).path / "final"
    world = World(0)
    prompts = tmp_path / "prompts.jsonl"
    rows = read_jsonl(world_dir / "prompts_eval.jsonl")[:12]
    prompts.write_text("".join(
        json.dumps({**row, "reference": world.best_response(world.parse(row["prompt"]))}) + "\n" for row in rows))
    out = tmp_path / "vs_reference"
    cli("eval", str(tiny_model), str(prompts), "--baseline-column", "reference", "--judge", "reward-model",
        "--reward-model", str(rm), "--n", "2", "--temperature", "1.0", "--max-new-tokens", "24", "--out", str(out))
    result = json.loads((out / "eval.json").read_text())
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == 24 and [s["sample"] for s in samples[:4]] == [0, 1, 0, 1]
    for s in samples:  # each verdict is the reward model's comparison of the two scores
        expected = "tie" if s["policy_reward"] == s["baseline_reward"] else (
            "policy" if s["policy_reward"] > s["baseline_reward"] else "baseline")
        assert s["verdict"] == expected
    outcome = {"policy": 1.0, "tie": 0.5, "baseline": 0.0}
    assert result["win_rate"]["win_rate"] == pytest.approx(sum(outcome[s["verdict"]] for s in samples) / 24)
    assert result["win_rate"]["units"] == 12  # a prompt's two samples are one unit of the interval
    policy, baseline = result["responses"]["policy"], result["responses"]["baseline"]
    assert policy["mean_reward"] == pytest.approx(sum(s["policy_reward"] for s in samples) / 24, abs=1e-5)
    assert baseline["gold_score"] > 0.8 > policy["gold_score"]  # an untrained model against the best replies
    assert baseline["no_eos_rate"] is None and baseline["mean_tokens"] is None  # nothing was generated


def test_bad_input_names_the_row_the_field_and_the_fix(tmp_path, tiny_model, world_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 3 + 4?", "reference": "3 + 4 = 7."}) + "\n"
                       + json.dumps({"prompt": "What is 2 + 2?"}) + "\n")
    missing = cli("eval", str(tiny_model), str(prompts), "--baseline-column", "reference", check=False)
    assert missing.returncode == 2
    assert "prompts.jsonl:2" in missing.stderr and "--baseline-column 'reference'" in missing.stderr

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"prompt": "Tell me a joke."}) + "\n")
    not_world = cli("eval", str(tiny_model), str(foreign), "--baseline", str(tiny_model), check=False)
    assert not_world.returncode == 2
    assert "foreign.jsonl:1" in not_world.stderr and "--judge reward-model" in not_world.stderr

    greedy = cli("eval", str(tiny_model), str(prompts), "--baseline", str(tiny_model), "--n", "4", check=False)
    assert greedy.returncode == 2 and "--temperature" in greedy.stderr


def test_sequence_logps_agree_with_the_samplers_incremental_logps(tiny_model, world_dir):
    # two computations of log pi(y|x): the sampler's, one token at a time with a KV cache over left-padded
    # prompts, and eval's, one right-padded forward over prompt + response
    from alignkit.eval.sampling import load_frozen, sequence_logps
    from alignkit.generation.sampler import SamplingSettings, generate

    model, tokenizer = load_frozen(str(tiny_model))
    prompts = [row["prompt"] for row in read_jsonl(world_dir / "prompts_eval.jsonl")[:4]]
    out = generate(model, tokenizer, prompts, SamplingSettings(max_new_tokens=12, temperature=1.0, n=2, seed=0))
    tokens = [(p[pm].tolist(), r[rm].tolist())
              for p, pm, r, rm in zip(out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)]
    expected = out.logps.sum(-1).tolist()
    assert max(expected) < -1.0  # twelve tokens of an untrained model: far from certain
    assert sequence_logps(model, tokens, batch_size=3) == pytest.approx(expected, abs=1e-3)
