"""`alignkit reward`: a reward model from preference pairs or rankings (Bradley-Terry).

A causal-LM backbone with a scalar head scores each response at its last real token; the loss is
-log sigmoid(r_chosen - r_rejected [- margin]) (Ouyang et al. 2022, eq. 1). Ranked rows give all
K(K-1)/2 pairs of a prompt, and they stay in one batch, as InstructGPT trains on them: a group of pairs
is one example. After training, the mean and std of rewards on held-out (or training) responses are saved
next to the model (reward_stats.json) so RL can normalise scores.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path

import torch

from alignkit.config import RewardConfig
from alignkit.data.collate import pad_sequences
from alignkit.data.tokenize import tokenize_preference
from alignkit.losses.reward import bradley_terry, centering_penalty, response_nll, reward_metrics
from alignkit.models.heads import (
    SequenceScorer,
    language_head,
    load_scalar_model,
    sequence_rewards,
    write_reward_stats,
)
from alignkit.models.load import save_pretrained
from alignkit.recipes.common import RunResult, create_run, finish, start, tokenized_splits
from alignkit.train.distributed import to_device
from alignkit.train.loop import fit


# per-pair means in metrics.jsonl
LOGGED = ("accuracy", "margin", "rewards/chosen", "rewards/rejected", "lm_nll")


def main(cfg: RewardConfig) -> RunResult:
    d = start(cfg)
    model, tokenizer = load_scalar_model(cfg.model, d.device, new_head=True)

    def tokenize(rows):
        # Held-out pairs from another source (gold labels) often lack the margin column: they are scored
        # without one (accuracy does not depend on it). A training file without it is still an error.
        margin = cfg.reward.margin_column
        if margin not in rows.columns and cfg.data.eval and Path(rows.source) == Path(cfg.data.eval):
            margin = None
        return tokenize_preference(rows, tokenizer, cfg.data.max_length, cfg.data.truncation,
                                   margin_column=margin)

    train_pairs, eval_pairs, reports = tokenized_splits(cfg, ["preference", "ranked"], tokenize)
    run = create_run("reward", cfg, d, reports)

    collate = lambda groups: to_device(collate_reward(groups, tokenizer.pad_token_id), d.device)  # noqa: E731
    loss_step = partial(reward_loss_step, center_coef=cfg.reward.center_coef, lm_coef=cfg.reward.lm_coef)
    scorer = SequenceScorer(model, language_head(model, cfg.model) if cfg.reward.lm_coef else None)
    result = fit(run, scorer, group_by_prompt(train_pairs), collate, loss_step, weight_key="num_pairs",
                 eval_examples=group_by_prompt(eval_pairs) if eval_pairs else None)
    if result.stopped == "done" and d.is_main:
        final = save_pretrained(model, tokenizer, run.dir / "final")
        reference = (eval_pairs or train_pairs)[: cfg.reward.stats_rows]
        stats = write_reward_stats(final, score_pairs(model, reference, collate, cfg.train.batch_size))
        result.metrics.update({"reward_mean": stats["mean"], "reward_std": stats["std"]})
    return finish(run.dir, result, d)


def group_by_prompt(pairs: list[dict]) -> list[list[dict]]:
    """One example per source row: the K(K-1)/2 pairs of a ranking stay together in one batch."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for pair in pairs:
        groups[pair["group"]].append(pair)
    return list(groups.values())


def collate_reward(groups: list[list[dict]], pad_id: int) -> dict:
    """Each distinct response of a group once, right-padded, and every pair as indices into those rows:
    first the chosen sides, then the rejected ones (for pair rows: every pair's chosen, then every rejected).

    A ranking of K responses gives K(K-1)/2 pairs but only K sequences to score: one forward pass per
    response, not per pair, is what makes rankings cheap comparisons (Ouyang et al. 2022, section 3.5).
    Equal texts in different groups stay separate rows, as separate examples."""
    rows: dict[tuple, int] = {}
    chosen, rejected, prompt_length = [], [], {}
    for side, indices in (("chosen_ids", chosen), ("rejected_ids", rejected)):
        for g, group in enumerate(groups):
            for pair in group:
                row = rows.setdefault((g, tuple(pair["prompt_ids"] + pair[side])), len(rows))
                prompt_length[row] = len(pair["prompt_ids"])
                indices.append(row)
    sequences = [list(ids) for _, ids in rows]
    pairs = [pair for group in groups for pair in group]
    batch = {
        "input_ids": pad_sequences(sequences, pad_id),
        "attention_mask": pad_sequences([[1] * len(s) for s in sequences], 0),
        "prompt_length": torch.tensor([prompt_length[i] for i in range(len(sequences))]),
        "chosen_index": torch.tensor(chosen),
        "rejected_index": torch.tensor(rejected),
        "num_pairs": len(pairs),
    }
    if pairs and "margin" in pairs[0]:
        batch["margin"] = torch.tensor([p["margin"] for p in pairs], dtype=torch.float32)
    return batch


def reward_loss_step(model, batch: dict, center_coef: float = 0.0, lm_coef: float = 0.0):
    """Summed Bradley-Terry loss over the batch's pairs (plus the centring penalty and the chosen responses'
    language-modelling loss), and metric sums."""
    out = model(batch["input_ids"], batch["attention_mask"])  # model: a SequenceScorer (or its DDP)
    rewards, logits = out if isinstance(out, tuple) else (out, None)  # [S], [S, T, V] with lm_coef
    chosen, rejected = rewards[batch["chosen_index"]], rewards[batch["rejected_index"]]  # [P], [P]
    losses = bradley_terry(chosen, rejected, batch.get("margin"))
    if center_coef:
        losses = losses + centering_penalty(chosen, rejected, center_coef)
    metrics = reward_metrics(chosen.detach(), rejected.detach())
    if logits is not None:
        positions = torch.arange(batch["input_ids"].shape[1], device=logits.device)
        response = (positions >= batch["prompt_length"][:, None]) & batch["attention_mask"].bool()  # [S, T]
        nll = response_nll(logits, batch["input_ids"], response)[batch["chosen_index"]]  # [P]
        losses = losses + lm_coef * nll
        metrics["lm_nll"] = nll.detach().sum().item()
    return losses.sum(), {k: v for k, v in metrics.items() if k in LOGGED}


@torch.no_grad()
def score_pairs(model, pairs: list[dict], collate, batch_size: int) -> torch.Tensor:
    """Rewards of the distinct responses of the pairs (for the saved mean and std)."""
    model.eval()
    scores = []
    for first in range(0, len(pairs), batch_size):
        batch = collate([[p] for p in pairs[first : first + batch_size]])
        scores.append(sequence_rewards(model, batch["input_ids"], batch["attention_mask"]).cpu())
    return torch.cat(scores)
