"""`alignkit best-of-n`: sample N responses per prompt, keep the one a reward model or a PRM scores highest.

Best-of-N (rejection sampling) is the simplest way to spend a reward model at inference: Nakano et al. 2021
(WebGPT) found it competitive with RL against the same reward model, and Gao et al. 2023 measure how the
gold reward of the chosen sample moves as N grows (it can fall when the proxy is over-optimised). The gain is
reported against the first sample of each prompt, an unbiased single draw from the same policy, so the
difference is what choosing bought: in the proxy reward, and, for demo-world prompts (`gold=True`), in the
gold judge's score, which the reward model never saw.

The reward is a folder: a process reward model (it holds prm.json; steps reduced by `reduce`) or a
Bradley-Terry reward model (scored at the last token, as `alignkit score` does).
"""

from __future__ import annotations

import time
from dataclasses import replace

from alignkit.config import ModelSettings
from alignkit.data.io import Rows, read_rows, write_jsonl
from alignkit.data.schema import validate_rows
from alignkit.errors import AlignkitError
from alignkit.generation.sampler import SamplingSettings, generate
from alignkit.rewards.prm import REDUCTIONS, ProcessReward, read_prm_info

GOLD_WORLD_SEED = 0  # the demo world `alignkit demo-data` writes by default


def best_of_n(model_path: str, prompts_path: str, out: str, reward_path: str, n: int = 8,
              reduce: str | None = None, gold: bool = False, settings: SamplingSettings | None = None,
              batch_size: int = 16, max_length: int = 1024) -> dict:
    """Write the best of `n` samples per prompt to `out`; return the summary (chosen vs first sample)."""
    if n < 2:
        raise AlignkitError(f"--n {n}: best-of-n needs at least 2 samples per prompt to choose from")
    settings = replace(settings or SamplingSettings(temperature=1.0), n=n)
    score = reward_function(reward_path, reduce, batch_size, max_length)
    rows = read_rows(prompts_path)
    validate_rows(rows, ["prompt"])
    world = _gold_world(rows) if gold else None

    started = time.perf_counter()
    candidates = sample(model_path, [row["prompt"] for row in rows.rows], settings, batch_size)
    sampled_s = time.perf_counter() - started
    flat_prompts = [row["prompt"] for row in rows.rows for _ in range(n)]
    flat_scores = score(flat_prompts, [c for group in candidates for c in group])
    written = []
    for i, row in enumerate(rows.rows):
        scores = flat_scores[i * n : (i + 1) * n]
        best = choose(scores)
        result = {**row, "completion": candidates[i][best], "score": scores[best], "sample": best,
                  "scores": scores, "first_completion": candidates[i][0]}
        if world is not None:
            result["gold"] = _gold(world, row["prompt"], candidates[i][best])
            result["gold_first"] = _gold(world, row["prompt"], candidates[i][0])
        written.append(result)
    write_jsonl(out, written)
    return summarize(written, n, sampled_s, time.perf_counter() - started - sampled_s)


def choose(scores: list[float | None]) -> int:
    """Index of the highest score (the first of equals); unscored (None) samples are never chosen unless no
    sample was scored, and then the first is kept."""
    scored = [i for i, s in enumerate(scores) if s is not None]
    return max(scored, key=lambda i: scores[i]) if scored else 0


def reward_function(path: str, reduce: str | None, batch_size: int, max_length: int):
    """`(prompts, completions) -> list[float | None]` for the folder at `path`: a PRM (it has prm.json) or a
    reward model. `reduce` belongs to PRMs only (default: min)."""
    if read_prm_info(path) is not None:
        return ProcessReward(path, reduce or "min", batch_size=batch_size, max_length=max_length)
    if reduce is not None:
        raise AlignkitError(f"--reduce {reduce} combines the step scores of a process reward model, but "
                            f"{path} has no prm.json (a reward model gives one score per response): drop "
                            "--reduce, or pass a PRM (the final/ of `alignkit prm`); reductions: "
                            f"{', '.join(REDUCTIONS)}")
    return RewardModelScore(path, batch_size, max_length)


class RewardModelScore:
    """A Bradley-Terry reward model folder as `(prompts, completions) -> list[float | None]`, scored as
    `alignkit score` does; a blank completion cannot be rendered as a reply and gets None."""

    def __init__(self, path: str, batch_size: int, max_length: int):
        from transformers import AutoConfig

        from alignkit.models.heads import is_reward_config
        from alignkit.models.load import _readable_errors, _resolve_source

        # fail now, before sampling, when the folder is neither kind of reward
        with _readable_errors(path):
            config = AutoConfig.from_pretrained(_resolve_source(path))
        if not is_reward_config(config):
            raise AlignkitError(f"--reward {path} is neither a process reward model (no prm.json) nor a "
                                "reward model (a 1-label *ForSequenceClassification folder): point to the "
                                "final/ folder of `alignkit prm` or `alignkit reward`")
        self.path, self.batch_size, self.max_length = path, batch_size, max_length

    def __call__(self, prompts: list, completions: list[str], **columns) -> list[float | None]:
        from alignkit.eval.judges import reward_model_scores

        return reward_model_scores(self.path, prompts, completions, self.max_length, self.batch_size)


def sample(model_path: str, prompts: list, settings: SamplingSettings, batch_size: int) -> list[list[str]]:
    """settings.n completions of each prompt (a string, or a message list rendered with the chat template)."""
    from alignkit.models.load import load_policy

    model, tokenizer = load_policy(ModelSettings(path=model_path))
    inputs = [_prompt_input(tokenizer, prompt) for prompt in prompts]
    texts: list[str] = []
    for start in range(0, len(inputs), batch_size):
        texts += generate(model, tokenizer, inputs[start : start + batch_size], settings).texts
    return [texts[i : i + settings.n] for i in range(0, len(texts), settings.n)]


def _prompt_input(tokenizer, prompt) -> str | list[int]:
    """A string goes to generate() as it is (one user turn, templated there); a message list is rendered."""
    from alignkit.data.tokenize import render_messages

    if isinstance(prompt, str):
        return prompt
    text = render_messages(tokenizer, prompt, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


def summarize(written: list[dict], n: int, sampled_s: float, scored_s: float) -> dict:
    """Mean reward (and gold score) of the chosen vs the first sample, over prompts where both were scored."""
    both = [r for r in written if r["score"] is not None and r["scores"][0] is not None]
    summary = {"prompts": len(written), "n": n, "scored_prompts": len(both),
               "reward_chosen": _mean([r["score"] for r in both]),
               "reward_first": _mean([r["scores"][0] for r in both]),
               "sampling_s": sampled_s, "scoring_s": scored_s}
    if written and "gold" in written[0]:
        summary["gold_chosen"] = _mean([r["gold"] for r in written])
        summary["gold_first"] = _mean([r["gold_first"] for r in written])
    return summary


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _gold_world(rows: Rows):
    """The demo world, once every prompt is checked to be one of its own (before any sampling)."""
    from alignkit.demo.world import World

    world = World(GOLD_WORLD_SEED)
    for row, location in zip(rows.rows, rows.locations):
        try:
            world.parse(_prompt_text(row["prompt"]))
        except ValueError as err:
            raise AlignkitError(f"{location}: --gold judges demo-world prompts only ({err}); drop --gold for "
                                "other prompts") from None
    return world


def _prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def _gold(world, prompt, completion: str) -> float:
    from alignkit.demo.judge import gold_score

    return gold_score(world, _prompt_text(prompt), completion)
