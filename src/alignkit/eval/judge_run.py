"""`alignkit judge`: an LLM judge over a file of pairs, and how far to trust it.

The story: read (prompt, a, b) rows (a/b, or chosen/rejected) -> judge each pair both ways round -> count
verdicts, failures, position bias and ties -> with --against gold, the demo world's gold verdict on every pair
and the judge's agreement with it -> results JSON (a summary and one row per pair). With `prefs_out`, the
decided pairs also become a preference file (RLAIF: AI-labelled pairs that `alignkit reward` / `dpo` take).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from alignkit.errors import AlignkitError


def read_pairs(source: str) -> tuple[list[str], list[str], list[str]]:
    """prompts, first and second responses from rows with prompt and a/b (or chosen/rejected) strings."""
    from alignkit.data.io import read_rows

    rows = read_rows(source)
    prompts, first, second = [], [], []
    for row, where in zip(rows.rows, rows.locations):
        keys = ("a", "b") if "a" in row else ("chosen", "rejected")
        values = [row.get(k) for k in ("prompt", *keys)]
        if not all(isinstance(v, str) for v in values):
            raise AlignkitError(f"{where}: needs string columns prompt and a/b (or chosen/rejected); "
                                f"has {sorted(row)}")
        prompts.append(values[0])
        first.append(values[1])
        second.append(values[2])
    if not prompts:
        raise AlignkitError(f"{source} has no rows to judge")
    return prompts, first, second


def world_seed_of(source: str, world_seed: int | None) -> int:
    """The demo world's seed: as given, else from manifest.json next to the data."""
    if world_seed is not None:
        return world_seed
    manifest = Path(source).parent / "manifest.json"
    if not manifest.is_file():
        raise AlignkitError(f"--against gold needs the demo world's seed: no {manifest}; pass --world-seed N")
    return int(json.loads(manifest.read_text())["seed"])


def judge_file(judge, source: str, out: str, against: str | None = None, world_seed: int | None = None,
               limit: int | None = None, prefs_out: str | None = None) -> dict:
    """Judge every pair in `source`; write the results JSON to `out` and return its summary.

    `prefs_out`: also write each pair the judge decided as a preference row (chosen = the judge's winner);
    ties and failed judgments are left out and counted in the summary's `prefs`."""
    from alignkit.data.io import write_json

    if against not in (None, "gold"):
        raise AlignkitError(f"--against {against!r}: the only reference judge is gold (the demo world's)")
    started = time.perf_counter()
    prompts, first, second = read_pairs(source)
    if limit is not None:
        prompts, first, second = prompts[:limit], first[:limit], second[:limit]
    result = judge.pairwise(prompts, first, second)
    summary = {"judge": judge.name, "pairs_file": source, **result.rates(),
               "verdicts": {v: sum(x == v for x in result.verdicts) for v in ("a", "b", "tie")},
               "failures": judge.counts.as_dict(), "requests": judge.backend.stats.as_dict()}
    gold = None
    if against == "gold":
        from alignkit.demo.judge import gold_verdict
        from alignkit.demo.world import World

        world = World(world_seed_of(source, world_seed))
        try:
            gold = [gold_verdict(world, p, a, b).lower() for p, a, b in zip(prompts, first, second)]
        except ValueError as err:
            raise AlignkitError(f"--against gold: {err} (is {source} from this demo world?)") from None
        judged = result.judged
        agree = sum(result.verdicts[i] == gold[i] for i in judged)
        decisive = [i for i in judged if gold[i] != "tie"]
        summary["gold"] = {
            "world_seed": world.seed,
            "agreement": agree / len(judged) if judged else None,  # over the pairs judged, ties included
            "agreement_on_all_pairs": agree / len(prompts),  # a failed judgment counts as disagreement
            "agreement_where_gold_decides": (
                sum(result.verdicts[i] == gold[i] for i in decisive) / len(decisive) if decisive else None),
            "gold_tie_rate": sum(g == "tie" for g in gold) / len(gold),
        }
    summary["seconds"] = time.perf_counter() - started
    rows = [{"prompt": prompts[i], "a": first[i], "b": second[i], "verdict": result.verdicts[i],
             "verdict_forward": result.forward[i], "verdict_swapped": result.backward[i],
             **({} if gold is None else {"gold": gold[i]})}
            for i in range(len(prompts))]
    if prefs_out is not None:
        summary["prefs"] = write_judged_prefs(prefs_out, prompts, first, second, result.verdicts)
    write_json(out, {"summary": summary, "pairs": rows})
    return summary


def write_judged_prefs(path: str, prompts: list[str], first: list[str], second: list[str],
                       verdicts: list[str | None]) -> dict:
    """Preference rows from the decided verdicts, written atomically; the counts of what was left out."""
    from alignkit.data.io import write_jsonl

    rows = [{"prompt": p, "chosen": a if v == "a" else b, "rejected": b if v == "a" else a}
            for p, a, b, v in zip(prompts, first, second, verdicts) if v in ("a", "b")]
    if not rows:
        raise AlignkitError(f"the judge decided none of the {len(prompts):,} pairs, so {path} was not "
                            "written")
    write_jsonl(path, rows)
    return {"path": str(path), "rows": len(rows), "ties_left_out": sum(v == "tie" for v in verdicts),
            "failures_left_out": sum(v is None for v in verdicts)}


def judge_stage(out_dir, pairs: str, model: str, against: str | None = None, world_seed: int | None = None,
                limit: int | None = None, write_prefs: bool = False, url: str | None = None,
                api_key_env: str | None = None, cache: str | None = None, bare: bool = False,
                max_tokens: int = 256, temperature: float = 0.0, parse_retries: int = 2,
                batch_size: int = 16) -> dict:
    """`alignkit judge` as a pipeline stage: out_dir/judge.json (written last: the stage is done once it
    exists) and, with `write_prefs`, the decided pairs as out_dir/prefs.jsonl."""
    from alignkit.rewards.judge import make_judge

    judge = make_judge(model, url, api_key_env, cache, bare=bare, max_tokens=max_tokens,
                       temperature=temperature, parse_retries=parse_retries, batch_size=batch_size)
    out = Path(out_dir)
    return judge_file(judge, pairs, str(out / "judge.json"), against, world_seed, limit,
                      str(out / "prefs.jsonl") if write_prefs else None)
