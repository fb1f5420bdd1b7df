"""`alignkit eval`: a policy against a baseline on held-out prompts, judged pairwise.

The story: read the prompts -> sample the policy, and the baseline model (or read its reference responses) ->
score both with the reward model, if one is given -> judge every pair, both ways round for a judge that may
prefer a position -> KL to a reference model on the policy's samples -> the win rate with its interval, per
category and length-controlled, and the diagnostics of both sides -> eval.json, samples.jsonl and a table.
Models are loaded one at a time and dropped when done.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from alignkit.errors import AlignkitError
from alignkit.eval import diagnostics as diag
from alignkit.eval.demo_checks import demo_diagnostics, parse_all
from alignkit.eval.judges import Judged, gold_judge, judge_pairs, reward_model_scores, score_table_judge
from alignkit.eval.sampling import Responses, kl_to_reference, reference_responses, sample_responses
from alignkit.eval.winrate import length_controlled_win_rate, per_category, win_rate
from alignkit.generation.sampler import SamplingSettings

JUDGES = ("gold", "reward-model", "llm")
SIDE_OF_VERDICT = {"a": "policy", "b": "baseline", "tie": "tie"}


@dataclass
class EvalSettings:
    """What `alignkit eval` takes; every field is a command-line option of the same name."""

    policy: str
    prompts: str
    out: str = "runs/eval"
    baseline: str | None = None  # a model folder ...
    baseline_column: str | None = None  # ... or a column of reference responses in the prompts file
    judge: str = "gold"
    reward_model: str | None = None  # judges with --judge reward-model; else only reports mean reward
    reference: str | None = None  # KL(policy || reference) on the policy's samples
    world_seed: int = 0  # the demo world the gold judge and the demo diagnostics read prompts with
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    limit: int | None = None  # the first `limit` prompts only
    batch_size: int = 64
    max_length: int = 1024  # longest prompt + response the reward model scores

    def check(self) -> None:
        problems = []
        if (self.baseline is None) == (self.baseline_column is None):
            problems.append("give exactly one baseline: --baseline MODEL_DIR or --baseline-column COLUMN")
        if self.judge not in JUDGES:
            problems.append(f"--judge {self.judge!r}: choose one of {', '.join(JUDGES)}")
        if self.judge == "reward-model" and self.reward_model is None:
            problems.append("--judge reward-model needs --reward-model PATH (a reward run's final/ folder)")
        if self.n > 1 and self.temperature == 0:
            problems.append(f"--n {self.n} with greedy decoding (--temperature 0) gives {self.n} identical "
                            "samples: set --temperature above 0 or --n 1")
        if self.limit is not None and self.limit < 1:
            problems.append(f"--limit {self.limit} must be at least 1")
        if problems:
            raise AlignkitError("eval: " + "; ".join(problems))

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                top_p=self.top_p, n=self.n, seed=self.seed)


@dataclass
class PromptSet:
    texts: list[str]
    categories: list[str]
    baseline_texts: list[str] | None
    tasks: list | None  # demo-world Tasks when every prompt is one the world made

    def per_sample(self, n: int) -> PromptSet:
        """One entry per sample: sample j of prompt i at i * n + j, as the sampler orders them."""
        def repeat(values):
            return None if values is None else [v for v in values for _ in range(n)]

        return PromptSet(repeat(self.texts), repeat(self.categories), None, repeat(self.tasks))


def evaluate(s: EvalSettings, llm_judge=None) -> dict:
    """Run the evaluation; write eval.json and samples.jsonl into s.out; return eval.json's content.
    With s.judge == "llm", `llm_judge` (a rewards.judge.LLMJudge) judges the pairs."""
    from alignkit.data.io import write_json, write_jsonl
    from alignkit.demo.world import World

    s.check()
    if (s.judge == "llm") != (llm_judge is not None):
        raise AlignkitError("eval: --judge llm and an LLM judge go together (the CLI builds it from --judge-model)")
    started = time.perf_counter()
    world = World(s.world_seed)
    prompts = read_prompts(s, world)
    sides = {"policy": sample_responses(s.policy, prompts.texts, s.sampling(), s.batch_size,
                                        with_logps=s.reference is not None)}
    if s.baseline is not None:
        sides["baseline"] = sample_responses(s.baseline, prompts.texts, s.sampling(), s.batch_size)
    else:
        sides["baseline"] = reference_responses(prompts.baseline_texts, s.n)
    rows = prompts.per_sample(s.n)
    groups = [i // s.n for i in range(len(rows.texts))]  # a prompt's samples are one unit of the interval

    rewards = gold = None
    if s.reward_model is not None:
        rewards = {side: reward_model_scores(s.reward_model, rows.texts, r.texts, s.max_length)
                   for side, r in sides.items()}
    if rows.tasks is not None:
        from alignkit.demo.judge import gold_score

        gold = {side: [gold_score(world, p, t) for p, t in zip(rows.texts, r.texts)]
                for side, r in sides.items()}
    if s.judge == "gold":
        judge = gold_judge(world)
    elif s.judge == "llm":  # judged here in batches, both ways round; judge_pairs reads and reconciles them
        judge = llm_judge.eval_judge(rows.texts, sides["policy"].texts, sides["baseline"].texts)
    else:
        table = {(p, t): score for side, r in sides.items()
                 for p, t, score in zip(rows.texts, r.texts, rewards[side])}
        judge = score_table_judge(f"reward model {s.reward_model}", table)
    judged = judge_pairs(judge, rows.texts, sides["policy"].texts, sides["baseline"].texts)
    kl = kl_to_reference(sides["policy"], s.policy, s.reference, s.batch_size) if s.reference else None

    lengths = {side: [len(t) for t in r.texts] for side, r in sides.items()}  # characters
    result = {
        "policy": s.policy,
        "baseline": s.baseline or f"column {s.baseline_column!r} of {s.prompts}",
        "prompts": s.prompts,
        "judge": judge.name,
        "num_prompts": len(prompts.texts),
        "samples_per_prompt": s.n,
        "sampling": asdict(s.sampling()),
        "win_rate": win_rate(judged.verdicts, groups).as_dict(),
        "length_controlled": length_controlled_win_rate(judged.verdicts, lengths["policy"], lengths["baseline"]),
        "position_swap": swap_summary(judged),
        "judge_failures": None if llm_judge is None else llm_judge.counts.as_dict(),
        "per_category": per_category(judged.verdicts, rows.categories, groups),
        "kl": None if kl is None else kl_summary(kl, sides["policy"], s.reference),
        "responses": {side: response_stats(rows.texts, r, rewards and rewards[side], gold and gold[side],
                                           world, rows.tasks)
                      for side, r in sides.items()},
        "seconds": time.perf_counter() - started,
    }
    out = Path(s.out)
    write_jsonl(out / "samples.jsonl", sample_rows(rows, s.n, sides, judged, rewards, gold, kl))
    write_json(out / "eval.json", result)
    print(format_table(result))
    print(f"results: {out / 'eval.json'}   samples: {out / 'samples.jsonl'}")
    return result


def read_prompts(s: EvalSettings, world) -> PromptSet:
    """The prompts (first s.limit), their categories and the baseline column, each checked with its row."""
    from alignkit.data.io import read_rows

    rows = read_rows(s.prompts)
    if s.limit is not None:
        rows = rows.select(range(min(s.limit, len(rows))))
    texts, categories, baseline_texts = [], [], []
    for row, where in zip(rows.rows, rows.locations):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise AlignkitError(f"{where}: 'prompt' must be a non-empty string, got {prompt!r}; eval reads "
                                "prompt-only rows like the demo's prompts_eval.jsonl")
        category = row.get("category", "all")
        if not isinstance(category, str) or not category:
            raise AlignkitError(f"{where}: 'category' must be a non-empty string, got {category!r} "
                                "(or leave the column out)")
        texts.append(prompt)
        categories.append(category)
        if s.baseline_column is not None:
            reference = row.get(s.baseline_column)
            if not isinstance(reference, str) or not reference.strip():
                raise AlignkitError(
                    f"{where}: --baseline-column {s.baseline_column!r} must hold a non-empty reference "
                    f"response, got {reference!r}; this row has columns {', '.join(row)}")
            baseline_texts.append(reference)
    tasks = parse_all(world, texts)
    if tasks is None and s.judge == "gold":
        where, prompt = next((w, p) for w, p in zip(rows.locations, texts) if parse_all(world, [p]) is None)
        raise AlignkitError(
            f"{where}: {prompt!r} is not a prompt of the demo world (seed {s.world_seed}), so the gold judge "
            "cannot score it: judge with --judge reward-model --reward-model PATH, or evaluate on demo prompts "
            "(prompts_eval.jsonl from `alignkit demo-data`; --world-seed must be the seed that wrote them)")
    return PromptSet(texts, categories, baseline_texts if s.baseline_column is not None else None, tasks)


def response_stats(prompts: list[str], responses: Responses, rewards: list | None, gold: list | None,
                   world, tasks: list | None) -> dict:
    """Length, diversity and diagnostics of one side's responses; None where the input to a number is absent."""
    texts = responses.texts
    chars = [len(t) for t in texts]
    scored = [(r, n) for r, n in zip(rewards, chars) if r is not None] if rewards is not None else []
    return {
        "mean_chars": float(np.mean(chars)),
        "mean_tokens": None if responses.token_counts is None else float(np.mean(responses.token_counts)),
        "no_eos_rate": None if responses.truncated is None else diag.rate(responses.truncated),
        "distinct_1": diag.distinct_n(texts, 1),
        "distinct_2": diag.distinct_n(texts, 2),
        "list_overuse_rate": diag.list_overuse_rate(prompts, texts),
        "refusal_rate": diag.refusal_rate(texts),
        "mean_reward": float(np.mean([r for r, _ in scored])) if scored else None,
        "empty_responses": sum(not t.strip() for t in texts),
        "reward_vs_length": diag.length_correlation(*zip(*scored)) if len(scored) > 1 else None,
        "gold_score": None if gold is None else float(np.mean(gold)),
        "gold_vs_length": None if gold is None else diag.length_correlation(gold, chars),
        "demo": None if tasks is None else demo_diagnostics(world, tasks, texts),
    }


def swap_summary(judged: Judged) -> dict:
    return {"swapped": judged.swapped, "position_bias_rate": judged.position_bias_rate,
            "first_position_rate": judged.first_position_rate}


def kl_summary(kl: list[float], policy: Responses, reference: str) -> dict:
    """k1 KL per sample (summed over its tokens) and per token (all samples' sums over all their tokens)."""
    return {"reference": reference, "mean": float(np.mean(kl)),
            "per_token": float(np.sum(kl) / max(sum(policy.token_counts), 1))}


def sample_rows(rows: PromptSet, n: int, sides: dict, judged: Judged, rewards, gold, kl) -> list[dict]:
    """samples.jsonl: one row per sample with both responses, the verdict in words and each score."""
    policy, baseline = sides["policy"], sides["baseline"]
    out = []
    for i, prompt in enumerate(rows.texts):
        row = {"prompt": prompt, "category": rows.categories[i], "sample": i % n,
               "policy": policy.texts[i], "baseline": baseline.texts[i],
               "verdict": SIDE_OF_VERDICT[judged.verdicts[i]]}
        if judged.swapped:  # both raw verdicts, named by side
            row["verdict_forward"] = SIDE_OF_VERDICT[judged.forward[i]]
            row["verdict_swapped"] = {"a": "baseline", "b": "policy", "tie": "tie"}[judged.backward[i]]
        if policy.truncated is not None:
            row["policy_truncated"] = policy.truncated[i]
        for name, values in (("reward", rewards), ("gold", gold)):
            if values is not None:
                row[f"policy_{name}"], row[f"baseline_{name}"] = values["policy"][i], values["baseline"][i]
        if kl is not None:
            row["kl"] = kl[i]
        out.append(row)
    return out


def format_table(result: dict) -> str:
    """The terminal summary: win rates, then per-category rates, then both sides' numbers."""
    def num(x, spec=".3f"):
        return "-" if x is None else format(x, spec)

    w = result["win_rate"]
    lines = [f"alignkit eval: {result['policy']} vs {result['baseline']}",
             f"{result['num_prompts']} prompts x {result['samples_per_prompt']} sample(s), "
             f"judge: {result['judge']}",
             "",
             f"win rate            {w['win_rate']:.3f}  95% CI [{w['ci_low']:.3f}, {w['ci_high']:.3f}]  "
             f"(wins {w['wins']}, ties {w['ties']}, losses {w['losses']})",
             f"length-controlled   {result['length_controlled']['win_rate']:.3f}"]
    swap = result["position_swap"]
    if swap["swapped"]:
        lines.append(f"position bias       {swap['position_bias_rate']:.3f} of pairs changed with the order")
    if result["kl"] is not None:
        lines.append(f"KL to reference     {result['kl']['mean']:.3f} per sample, "
                     f"{result['kl']['per_token']:.4f} per token")
    lines += ["", f"{'category':<22}{'n':>5}  {'win rate':>8}  95% CI"]
    for category, c in result["per_category"].items():
        lines.append(f"{category:<22}{c['units']:>5}  {c['win_rate']:>8.3f}  "
                     f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}]")
    policy, baseline = result["responses"]["policy"], result["responses"]["baseline"]
    lines += ["", f"{'':<22}{'policy':>10}{'baseline':>10}"]
    for key in ("gold_score", "mean_reward", "mean_chars", "mean_tokens", "no_eos_rate", "distinct_2",
                "list_overuse_rate", "refusal_rate"):
        if policy[key] is not None or baseline[key] is not None:
            lines.append(f"{key:<22}{num(policy[key]):>10}{num(baseline[key]):>10}")
    for key in ("over_refusal_rate", "sycophancy_rate"):
        if policy["demo"] is not None:
            lines.append(f"{key:<22}{num(policy['demo'][key]['rate']):>10}"
                         f"{num(baseline['demo'][key]['rate']):>10}")
    return "\n".join(lines)
