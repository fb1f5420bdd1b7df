"""`alignkit score`: reward-model scores for prompt/response rows, from one model or an ensemble.

Rows: {"prompt", "completion"} (or "response"), strings or message lists. Each output row is the input row
plus "score" (and, for an ensemble, "scores": one per member). Ensembles combine members as mean, min or
mean - k*std (Coste et al. 2023), which penalises responses the members disagree on. A process reward model
(a folder with prm.json, from `alignkit prm`) scores every step instead: "step_scores" holds each step's
logit and "score" their reduction (min, product or last, as a reward); a response without a step, or whose
steps do not fit max_length, gets null and is counted.
"""

from __future__ import annotations


import torch

from alignkit.config import ModelSettings
from alignkit.data.collate import pad_sequences
from alignkit.data.io import Rows, read_rows, write_jsonl
from alignkit.data.tokenize import tokenize_sft
from alignkit.errors import AlignkitError
from alignkit.losses.reward import ENSEMBLE_MODES, ensemble_score
from alignkit.models.heads import load_scalar_model, sequence_rewards


def score_file(models: list[str], source: str, out: str, ensemble: str = "mean", k: float = 1.0,
               max_length: int = 1024, batch_size: int = 16, reduce: str | None = None) -> dict:
    from alignkit.rewards.prm import read_prm_info

    if ensemble not in ENSEMBLE_MODES:
        raise AlignkitError(f"--ensemble {ensemble!r}: choose one of {', '.join(ENSEMBLE_MODES)}")
    prms = [path for path in models if read_prm_info(path) is not None]
    if prms and len(models) > 1:
        raise AlignkitError(f"{prms[0]} is a process reward model (it has prm.json): score with it alone, "
                            "not in an ensemble of reward models")
    if reduce is not None and not prms:
        raise AlignkitError(f"--reduce {reduce} combines a process reward model's step scores, but "
                            f"{models[0]} has no prm.json: drop --reduce for a reward model")
    rows = read_rows(source)
    as_sft = Rows(rows.source, [_prompt_completion(r, where) for r, where in zip(rows.rows, rows.locations)],
                  rows.locations)
    if prms:
        return _score_steps(prms[0], rows, as_sft, out, reduce or "min", max_length, batch_size)
    per_member = [score_rows(path, as_sft, max_length, batch_size) for path in models]
    members = torch.stack(per_member)  # [N, rows]
    combined = ensemble_score(members, ensemble, k) if len(models) > 1 else members[0]
    write_jsonl(out, [
        {**row, "score": combined[i].item(), **({"scores": members[:, i].tolist()} if len(models) > 1 else {})}
        for i, row in enumerate(rows.rows)
    ])
    return {"rows": len(rows), "mean": combined.mean().item(), "std": combined.std().item() if len(rows) > 1 else 0.0}


def _score_steps(path: str, rows: Rows, as_sft: Rows, out: str, reduce: str, max_length: int,
                 batch_size: int) -> dict:
    """A process reward model over the rows: each step's logit and their reduction; null where unscorable."""
    from alignkit.rewards.prm import ProcessReward

    prm = ProcessReward(path, reduce, batch_size=batch_size, max_length=max_length)
    prompts, completions = [row["prompt"] for row in as_sft.rows], [row["completion"] for row in as_sft.rows]
    steps = prm.step_logits(prompts, completions)
    scores = [None if logits is None else prm.reduce(logits) for logits in steps]
    write_jsonl(out, [{**row, "score": score, "step_scores": logits}
                      for row, score, logits in zip(rows.rows, scores, steps)])
    scored = torch.tensor([x for x in scores if x is not None])
    return {"rows": len(rows), "unscored": len(scores) - len(scored),
            "mean": scored.mean().item() if len(scored) else float("nan"),
            "std": scored.std().item() if len(scored) > 1 else 0.0}


def score_rows(model_path: str, rows: Rows, max_length: int = 1024, batch_size: int = 16) -> torch.Tensor:
    """Scores [rows] of prompt/completion rows under the reward model in `model_path` (read at the last
    token of prompt + completion, rendered as the model's training rows were)."""
    model, tokenizer = load_scalar_model(ModelSettings(path=model_path), new_head=False)
    examples, _ = tokenize_sft(rows, tokenizer, max_length, "error")
    return _score(model.eval(), examples, tokenizer.pad_token_id, batch_size)


def _prompt_completion(row: dict, where: str) -> dict:
    response = row.get("completion", row.get("response"))
    if "prompt" not in row or response is None:
        raise AlignkitError(f"{where}: scoring needs 'prompt' and 'completion' (or 'response'); "
                            f"this row has {', '.join(row)}")
    return {"prompt": row["prompt"], "completion": response}


@torch.no_grad()
def _score(model, examples: list[dict], pad_id: int, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(examples), batch_size):
        ids = [e["input_ids"] for e in examples[start : start + batch_size]]
        input_ids = pad_sequences(ids, pad_id).to(device)
        mask = pad_sequences([[1] * len(x) for x in ids], 0).to(device)
        scores.append(sequence_rewards(model, input_ids, mask).cpu())
    return torch.cat(scores)

