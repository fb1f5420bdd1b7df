"""`alignkit cai`: training data from AI feedback under a constitution (Constitutional AI, Bai et al. 2022,
arXiv:2212.08073). It samples models and trains none; each phase writes a file an existing recipe trains on.

- phase sft (the paper's supervised stage, SL-CAI): the policy answers every prompt; then, for `rounds`
  rounds, a principle drawn at random has the critic critique the current answer and rewrite it. The last
  rewrite is the completion of an SFT row (sft.jsonl, for `alignkit sft`); chains.jsonl keeps every step.
- phase prefs (the paper's RL stage, RLAIF): the policy samples two responses to every prompt; the judge
  compares them under `principles_per_pair` drawn principles (the principle's comparison question is the
  rubric; each pair is asked both ways round and reconciled, rewards/judge.py), and the majority of the
  verdicts picks the chosen response of a preference row (prefs.jsonl, for `alignkit reward` / `dpo`). The
  paper trains on the judge's probabilities; a file of hard pairs is what our reward and DPO recipes read.

Every generation is one batched call over all prompts of a round. Nothing is lost silently: an empty
revision keeps the answer before it, a pair that stays identical is skipped, a tie or failed judgment has no
vote; each is counted in summary.json, which is written last and so marks a finished run.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from alignkit.config import CAIConfig, FeedbackModelSettings
from alignkit.data.io import read_rows, write_json, write_jsonl, write_text
from alignkit.data.schema import as_messages
from alignkit.data.tokenize import tokenize_prompts
from alignkit.errors import AlignkitError
from alignkit.recipes.common import RunResult
from alignkit.rewards.constitution import Principle, critique_messages, load_constitution, revision_messages
from alignkit.rewards.judge import LLMJudge, PairwiseResult
from alignkit.rewards.judge_backends import CachedBackend, EndpointBackend, LocalBackend, Sampling
from alignkit.train.run import config_yaml


def main(cfg: CAIConfig) -> RunResult:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    run_dir = Path(cfg.output_dir) / cfg.name
    if (run_dir / "summary.json").exists():
        raise AlignkitError(f"run folder {run_dir} already holds a finished cai run: choose another name "
                            "(name=...)")
    c = cfg.cai
    constitution = load_constitution(c.constitution)
    if c.phase != "sft" and c.principles_per_pair > len(constitution):
        raise AlignkitError(f"cai.principles_per_pair={c.principles_per_pair}, but the constitution has only "
                            f"{len(constitution)} principles: lower it or add principles")

    policy = LocalBackend(cfg.model.path, cfg.model.batch_size)
    prompt_rows, prompts, prompt_report = load_prompts(cfg, policy.tokenizer)
    write_text(run_dir / "config.yaml", config_yaml("cai", cfg))  # as training runs write it
    summary = {"phase": c.phase, "constitution": {"source": c.constitution or "default",
                                                   "principles": [p.name for p in constitution]},
               "prompts": {"read": prompt_report.rows, "kept": len(prompts),
                           "dropped_too_long": len(prompt_report.dropped)}}
    policy_path = str(Path(cfg.model.path))
    local = {policy_path: policy}  # each local folder is loaded once, whatever roles it plays
    sampling = Sampling(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p, cfg.seed)

    if c.phase in ("sft", "both"):
        critic = feedback_backend(cfg.critic, policy_path, local, cfg.model.batch_size)
        critic_sampling = Sampling(cfg.critic.max_tokens, cfg.critic.temperature, 1.0, cfg.seed)
        print(f"[cai] sft phase: {len(prompts):,} prompts, {c.rounds} critique-revision round(s)")
        chains, counts = critique_and_revise(prompts, policy, critic, constitution, c.rounds,
                                             random.Random(cfg.seed), sampling, critic_sampling)
        rows = sft_rows(prompt_rows, chains)
        write_jsonl(run_dir / "chains.jsonl", [{"prompt": prompt, **chain}
                                               for prompt, chain in zip(prompt_rows, chains)])
        write_jsonl(run_dir / "sft.jsonl", rows)
        summary["sft"] = {**counts, "rows": len(rows), "requests": requests_of(critic)}
        print(f"[cai] sft.jsonl: {len(rows):,} rows; {counts['empty_revisions']:,} empty revisions kept the "
              f"answer before them; {counts['unrevised']:,} prompts never revised, left out")

    if c.phase in ("prefs", "both"):
        backend = feedback_backend(cfg.judge, policy_path, local, cfg.model.batch_size)
        judging = Sampling(cfg.judge.max_tokens, cfg.judge.temperature, 1.0, cfg.seed)
        judge = LLMJudge(backend, sampling=judging, parse_retries=cfg.judge.parse_retries,
                         bare=cfg.judge.bare)
        print(f"[cai] prefs phase: {len(prompts):,} prompts, {c.principles_per_pair} principle(s) per pair")
        # A stream of its own, so phase=prefs alone draws what phase=both draws.
        rows, counts = label_pairs(prompt_rows, prompts, policy, judge, constitution, c.principles_per_pair,
                                   c.resample_tries, random.Random(cfg.seed + 1), sampling)
        write_jsonl(run_dir / "prefs.jsonl", rows)
        summary["prefs"] = {**counts, "rows": len(rows), "judge": judge.counts.as_dict(),
                            "requests": requests_of(backend)}
        print(f"[cai] prefs.jsonl: {len(rows):,} rows from {counts['pairs_judged']:,} pairs judged; "
              f"{counts['undecided']:,} undecided (ties, failed judgments), {counts['skipped_identical']:,} "
              f"identical and {counts['skipped_empty']:,} empty pairs skipped")
        if not rows:
            print("[cai] prefs.jsonl is empty: the judge decided no pair (see judge counts in summary.json)")

    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(run_dir / "summary.json", summary)
    print(f"[cai] done in {summary['seconds']} s; run folder {run_dir}")
    metrics = {f"{phase}/{key}": value for phase in ("sft", "prefs")
               for key, value in summary.get(phase, {}).items() if isinstance(value, (int, float))}
    return RunResult(path=run_dir, metrics=metrics)


def load_prompts(cfg: CAIConfig, tokenizer):
    """(each kept row's prompt as written, the same prompts as message lists, the tokenization report): rows
    read and checked as PPO / GRPO read them, over-long prompts handled by data.truncation."""
    rows = read_rows(cfg.data.prompts)
    if cfg.data.limit is not None:
        rows = rows.select(range(min(cfg.data.limit, len(rows))))
    examples, report = tokenize_prompts(rows, tokenizer, cfg.data.max_prompt_length, cfg.data.truncation)
    kept = [rows.rows[e["row"]]["prompt"] for e in examples]
    if not kept:
        raise AlignkitError(f"{cfg.data.prompts}: no prompts left to work on (read {len(rows):,}; "
                            f"{len(report.dropped):,} over data.max_prompt_length="
                            f"{cfg.data.max_prompt_length})")
    return kept, [as_messages(prompt, "user") for prompt in kept], report


def feedback_backend(settings: FeedbackModelSettings, policy_path: str, local: dict, batch_size: int):
    """What a critic or judge asks: an endpoint, or a local folder (the policy's when `model` is null) taken
    from `local` (path -> LocalBackend) or loaded into it; behind an on-disk cache when `cache` is set."""
    if settings.url is not None:
        backend = EndpointBackend(settings.url, settings.model, settings.api_key_env, settings.timeout_s,
                                  settings.max_retries, concurrency=settings.concurrency)
    else:
        path = str(Path(settings.model)) if settings.model else policy_path
        if path not in local:
            local[path] = LocalBackend(path, batch_size)
        backend = local[path]
    return backend if settings.cache is None else CachedBackend(backend, settings.cache)


def critique_and_revise(prompts: list[list[dict]], policy, critic, constitution: list[Principle], rounds: int,
                        rng: random.Random, sampling: Sampling,
                        critic_sampling: Sampling) -> tuple[list[dict], dict]:
    """The supervised phase: a chain per prompt {initial, rounds: [{principle, critique, revision, used}],
    final, revised} and the counts. A revision that is empty once stripped, or whose request failed, is not
    used: the answer before it stays current. A chain none of whose revisions was used is not revised."""
    counts = Counter(empty_initial=0, empty_critiques=0, empty_revisions=0, failed_requests=0, unrevised=0)
    drawn_names: Counter = Counter()
    current = [(text or "").strip() for text in policy.chat(prompts, sampling)]  # [N]
    counts["empty_initial"] = sum(not text for text in current)
    chains = [{"initial": text, "rounds": []} for text in current]
    for round_index in range(rounds):
        principles = [rng.choice(constitution) for _ in prompts]  # [N]
        asking = replace(critic_sampling, seed=critic_sampling.seed + round_index)
        critiques = critic.chat([critique_messages(p, answer, principle)
                                 for p, answer, principle in zip(prompts, current, principles)], asking)
        answered = [i for i, critique in enumerate(critiques) if critique is not None]
        counts["failed_requests"] += len(prompts) - len(answered)
        revisions: list[str | None] = [None] * len(prompts)
        replies = critic.chat([revision_messages(prompts[i], current[i], critiques[i].strip(), principles[i])
                               for i in answered], asking)
        for i, reply in zip(answered, replies):
            revisions[i] = reply
            counts["failed_requests"] += reply is None
        for i, principle in enumerate(principles):
            critique, revision = (critiques[i] or "").strip(), (revisions[i] or "").strip()
            counts["empty_critiques"] += critiques[i] is not None and not critique
            counts["empty_revisions"] += revisions[i] is not None and not revision
            drawn_names[principle.name] += 1
            if revision:
                current[i] = revision
            chains[i]["rounds"].append({"principle": principle.name, "critique": critique,
                                        "revision": revision, "used": bool(revision)})
    for chain, final in zip(chains, current):
        chain["final"] = final
        chain["revised"] = any(step["used"] for step in chain["rounds"])
        counts["unrevised"] += not chain["revised"]
    return chains, {**counts, "prompts": len(prompts), "rounds": rounds,
                    "principles_drawn": dict(drawn_names)}


def sft_rows(prompts: list, chains: list[dict]) -> list[dict]:
    """SFT rows {prompt, completion: the final revision} of the revised chains, the completion in the prompt's
    style (a string, or one assistant message after a message-list prompt), as data/schema.py wants."""
    return [{"prompt": prompt, "completion": reply_as(prompt, chain["final"])}
            for prompt, chain in zip(prompts, chains) if chain["revised"]]


def label_pairs(prompt_rows: list, prompts: list[list[dict]], policy, judge: LLMJudge,
                constitution: list[Principle], per_pair: int, resample_tries: int, rng: random.Random,
                sampling: Sampling) -> tuple[list[dict], dict]:
    """The AI-feedback phase: preference rows {prompt, chosen, rejected, principles, verdicts} and counts.
    `verdicts` holds, per principle, the side it voted for ("chosen", "rejected"), "tie" or None (failed)."""
    first, second, skipped = sample_pairs(prompts, policy, resample_tries, sampling)
    pairs = [i for i in range(len(prompts)) if i not in skipped["all"]]
    drawn = {i: rng.sample(constitution, per_pair) for i in pairs}  # distinct principles per pair
    votes = {i: [] for i in pairs}  # pair -> verdicts ("a" = first) in the order of drawn[i]
    results = []
    for principle in constitution:  # one batched judge call per principle, its comparison as the rubric
        judged = [(i, k) for i in pairs for k, p in enumerate(drawn[i]) if p is principle]
        if not judged:
            continue
        result = replace(judge, rubric=principle.comparison).pairwise(
            [conversation_text(prompts[i]) for i, _ in judged], [first[i] for i, _ in judged],
            [second[i] for i, _ in judged])
        results.append(result)
        for (i, k), verdict in zip(judged, result.verdicts):
            votes[i].append((k, verdict))
    rows, undecided = [], 0
    for i in pairs:
        verdicts = [verdict for _, verdict in sorted(votes[i])]
        winner = majority(verdicts)
        if winner is None:
            undecided += 1
            continue
        chosen, rejected = (first[i], second[i]) if winner == "a" else (second[i], first[i])
        side = {winner: "chosen", ("b" if winner == "a" else "a"): "rejected", "tie": "tie", None: None}
        rows.append({"prompt": prompt_rows[i], "chosen": reply_as(prompt_rows[i], chosen),
                     "rejected": reply_as(prompt_rows[i], rejected),
                     "principles": [p.name for p in drawn[i]], "verdicts": [side[v] for v in verdicts]})
    merged = PairwiseResult(*(sum((getattr(r, name) for r in results), [])
                              for name in ("verdicts", "forward", "backward")))
    tally = Counter(merged.verdicts)
    return rows, {"prompts": len(prompts), "resampled": skipped["resampled"],
                  "skipped_identical": len(skipped["identical"]), "skipped_empty": len(skipped["empty"]),
                  "pairs_judged": len(pairs), "judgments": len(merged.verdicts),
                  "votes": {"first": tally["a"], "second": tally["b"]}, "ties": tally["tie"],
                  "failed_judgments": tally[None], "undecided": undecided,
                  "position_bias_rate": merged.rates()["position_bias_rate"]}


def sample_pairs(prompts: list[list[dict]], policy, resample_tries: int, sampling: Sampling):
    """Two responses per prompt, sampled together; a prompt whose two responses are identical or either is
    empty (once stripped) is sampled again with the next seed, up to resample_tries times, then skipped."""
    n = len(prompts)
    first, second = [""] * n, [""] * n
    pending, resampled = list(range(n)), 0
    for attempt in range(resample_tries + 1):
        if not pending:
            break
        resampled += len(pending) if attempt else 0
        texts = policy.chat([prompts[i] for i in pending for _ in range(2)],
                            replace(sampling, seed=sampling.seed + attempt))
        for k, i in enumerate(pending):
            first[i], second[i] = (texts[2 * k] or "").strip(), (texts[2 * k + 1] or "").strip()
        pending = [i for i in pending if not first[i] or not second[i] or first[i] == second[i]]
    empty = [i for i in pending if not first[i] or not second[i]]
    identical = [i for i in pending if i not in empty]
    return first, second, {"all": set(pending), "empty": empty, "identical": identical,
                           "resampled": resampled}


def majority(verdicts: list[str | None]) -> str | None:
    """'a' or 'b' when it has more votes than the other; None when neither has (ties and failed judgments
    cast no vote)."""
    a, b = verdicts.count("a"), verdicts.count("b")
    return "a" if a > b else "b" if b > a else None


def conversation_text(messages: list[dict]) -> str:
    """What the judge sees as the question: the user's text, or a multi-turn conversation as role: text."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def reply_as(prompt, text: str):
    """A reply in the style of its prompt: a string, or one assistant message after a message list."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def requests_of(backend) -> dict:
    stats = backend.stats.as_dict()
    return {**stats, "cache_hits": backend.hits} if isinstance(backend, CachedBackend) else stats

