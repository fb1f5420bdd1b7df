"""A process reward model (the final/ of `alignkit prm`) as a reward function.

`ProcessReward(path, reduce)` is a callable `(prompts, completions, **columns) -> list[float | None]`: it
splits each completion into steps at the separator the PRM was trained with (saved in prm.json next to the
weights), scores every step with the PRM (one logit per step, read at the step's last token, see
data/stepwise.py) and reduces the steps' probabilities sigmoid(logit) to one number with a function of
REDUCTIONS. The reductions are pure functions of the step logits (standard library only); torch and
transformers load only when a model does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from alignkit.errors import AlignkitError

PRM_FILE = "prm.json"  # next to a PRM's weights: {"step_separator": ...}


def _log_sigmoid(x: float) -> float:
    """log(1 / (1 + e^-x)) without overflow for large |x|."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def reduce_min(step_logits: list[float]) -> float:
    """The weakest step's probability of being correct: min_i sigmoid(l_i).

    Math-Shepherd, Wang et al. 2024, which ranks solutions by the minimum score across their steps: a
    solution is as good as its worst step.
    """
    return math.exp(_log_sigmoid(min(step_logits)))


def reduce_product(step_logits: list[float]) -> float:
    """The probability that every step is correct, steps taken as independent: prod_i sigmoid(l_i).

    Lightman et al. 2023, "Let's verify step by step" (their PRM score of a solution). Summed in log space
    so that many steps do not underflow. Long solutions score lower, all else equal.
    """
    return math.exp(sum(_log_sigmoid(logit) for logit in step_logits))


def reduce_last(step_logits: list[float]) -> float:
    """The last step's probability, sigmoid(l_last): the PRM read as an outcome verifier that has seen the
    whole solution. Snell et al. 2024, "Scaling LLM test-time compute optimally can be more effective than
    scaling model parameters", compare min, product and last-step aggregation and found the last step best
    for their PRM."""
    return math.exp(_log_sigmoid(step_logits[-1]))


REDUCTIONS = {"min": reduce_min, "product": reduce_product, "last": reduce_last}


def write_prm_info(folder: Path, separator: str) -> Path:
    """Record the step separator next to the weights: scoring splits completions as training joined them."""
    path = Path(folder) / PRM_FILE
    path.write_text(json.dumps({"step_separator": separator}, indent=2) + "\n")
    return path


def read_prm_info(folder: str | Path) -> dict | None:
    """The PRM facts saved with a model folder, or None when the folder holds no prm.json (not a PRM)."""
    path = Path(folder) / PRM_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AlignkitError(f"{path}: not valid JSON ({err}); it is written by `alignkit prm`: retrain or "
                            'restore it as {"step_separator": "\\n"}') from None
    separator = info.get("step_separator") if isinstance(info, dict) else None
    if not isinstance(separator, str) or not separator:
        raise AlignkitError(f'{path}: "step_separator" must be a non-empty string, got {separator!r}')
    return info


def step_logits(model, input_ids, attention_mask, step_positions):
    """The PRM's logit for every step: the head at every token, read at each step's last token.
    [B, T] ids and mask, [B, S] positions -> [B, S] (padded steps read position 0: mask them)."""
    from alignkit.models.heads import token_scores

    scores = token_scores(model, input_ids, attention_mask)  # [B, T]
    return scores.gather(1, step_positions)  # [B, S]


class ProcessReward:
    """A PRM folder as a reward function: one score per completion, the steps' probabilities reduced by
    `reduce` (a key of REDUCTIONS). A completion without any step, or whose steps alone exceed
    `max_length` tokens, gets None (cannot be scored); a prompt too long is cut from the left."""

    def __init__(self, path: str | Path, reduce: str = "min", batch_size: int = 16, max_length: int = 1024,
                 device=None):
        if reduce not in REDUCTIONS:
            raise AlignkitError(f"PRM reduction {reduce!r}: choose one of {', '.join(REDUCTIONS)}")
        info = read_prm_info(path)
        if info is None:
            raise AlignkitError(f"{path} has no {PRM_FILE}, so it is not a process reward model: train one "
                                "with `alignkit prm` and point to its final/ folder")
        from alignkit.config import ModelSettings
        from alignkit.models.heads import load_scalar_model

        self.separator = info["step_separator"]
        self.reduce = REDUCTIONS[reduce]
        self.batch_size, self.max_length = batch_size, max_length
        self.model, self.tokenizer = load_scalar_model(ModelSettings(path=str(path)), device, new_head=False)
        self.model.eval()
        self.__name__ = f"prm_{reduce}"

    def __call__(self, prompts: list, completions: list[str], **columns) -> list[float | None]:
        per_step = self.step_logits(prompts, completions)
        return [None if logits is None else self.reduce(logits) for logits in per_step]

    def step_logits(self, prompts: list, completions: list[str]) -> list[list[float] | None]:
        """Each completion's step logits (None where it cannot be scored), in order."""
        import torch

        from alignkit.data.stepwise import collate_steps, encode_steps, split_steps

        if len(prompts) != len(completions):
            raise AlignkitError(f"{len(prompts)} prompts for {len(completions)} completions: pass one prompt "
                                "per completion")
        examples: list[dict | None] = []
        for prompt, completion in zip(prompts, completions):
            steps = split_steps(completion, self.separator)
            encoded = encode_steps(self.tokenizer, prompt, steps, self.separator) if steps else None
            examples.append(self._fit(encoded) if encoded else None)
        scorable = [i for i, e in enumerate(examples) if e is not None]
        out: list[list[float] | None] = [None] * len(completions)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(scorable), self.batch_size):
                rows = scorable[start : start + self.batch_size]
                batch = collate_steps([examples[i] for i in rows], self.tokenizer.pad_token_id)
                ids, mask, positions = (batch[key].to(device)
                                        for key in ("input_ids", "attention_mask", "step_positions"))
                logits = step_logits(self.model, ids, mask, positions).cpu()  # [b, S]
                for row, values, mask in zip(rows, logits, batch["step_mask"]):
                    out[row] = values[mask].tolist()
        return out

    def _fit(self, encoded) -> dict | None:
        """The example, its prompt cut from the left to fit max_length; None if the steps alone do not fit."""
        excess = max(0, len(encoded.ids) - self.max_length)
        if excess and encoded.prompt_length - excess < 1:
            return None
        return {"input_ids": encoded.ids[excess:],
                "step_positions": [end - excess for end in encoded.step_ends]}
