"""`alignkit kto`: Kahneman-Tversky optimisation from unpaired thumbs-up / thumbs-down completions.

Ethayarajh et al. 2024: each completion's implicit reward r = log pi(y|x) - log pi_ref(y|x) is compared
with a reference point z0, an estimate of KL(pi || pi_ref) taken from MISMATCHED prompt/completion pairs
of the same batch (prompt i with completion i+1), detached. Runs on unpaired rows (prompt, completion,
label) or on preference rows split into one desirable and one undesirable completion each.
"""

from __future__ import annotations

from functools import partial

import torch

from alignkit.config import KTOConfig, KTOSettings
from alignkit.data.collate import pad_sequences
from alignkit.data.io import Rows
from alignkit.data.schema import detect_kind, preference_conversation
from alignkit.data.tokenize import tokenize_sft
from alignkit.losses.kto import kl_reference_point, kto_loss, kto_metrics
from alignkit.models.forward import next_token_logps
from alignkit.models.load import load_policy, load_reference, save_pretrained, unwrap
from alignkit.recipes.common import RunResult, create_run, finish, reference_settings, start, tokenized_splits
from alignkit.train.distributed import to_device
from alignkit.train.loop import fit


def main(cfg: KTOConfig) -> RunResult:
    d = start(cfg)
    policy, tokenizer = load_policy(cfg.model, d.device)

    tokenize = partial(unpaired_examples, tokenizer=tokenizer, max_length=cfg.data.max_length,
                       truncation=cfg.data.truncation)
    train_examples, eval_examples, reports = tokenized_splits(cfg, ["unpaired", "preference"], tokenize)
    run = create_run("kto", cfg, d, reports)
    if d.is_main:
        desirable = sum(e["desirable"] for e in train_examples)
        print(f"{desirable:,} desirable and {len(train_examples) - desirable:,} undesirable completions")

    if cfg.kto.reference == "adapter":
        reference = unwrap(policy)
    else:
        reference = load_reference(reference_settings(cfg.model, cfg.kto.reference_path), d.device)
    collate = lambda examples: to_device(collate_kto(examples, tokenizer.pad_token_id), d.device)  # noqa: E731
    step = partial(kto_loss_step, settings=cfg.kto, reference=reference)
    result = fit(run, policy, train_examples, collate, step, weight_key="num_rows", eval_examples=eval_examples)
    if result.stopped == "done" and d.is_main:
        save_pretrained(policy, tokenizer, run.dir / "final")
    return finish(run.dir, result, d)


def unpaired_examples(rows: Rows, tokenizer, max_length: int, truncation: str):
    """Tokenized {"prompt_ids", "completion_ids", "desirable"} examples, and the tokenization report.

    Preference rows become two unpaired rows each: chosen (desirable) and rejected (undesirable).
    """
    completions, locations, labels = [], [], {}
    for row, location in zip(rows.rows, rows.locations):
        if detect_kind(row.keys()) == "unpaired":
            completions.append({"prompt": row["prompt"], "completion": row["completion"]})
            locations.append(location)
            labels[location] = bool(row["label"])
            continue
        prompt, chosen, rejected = preference_conversation(row)
        for side, completion, desirable in (("chosen", chosen, True), ("rejected", rejected, False)):
            completions.append({"prompt": prompt, "completion": completion})
            locations.append(f"{location} {side}")
            labels[f"{location} {side}"] = desirable
    examples, report = tokenize_sft(Rows(rows.source, completions, locations), tokenizer, max_length, truncation)
    split = []
    for e in examples:
        start = e["labels_mask"].index(True)  # the completion begins at the first scored token
        split.append({"prompt_ids": e["input_ids"][:start], "completion_ids": e["input_ids"][start:],
                      "desirable": labels[e["location"]], "location": e["location"]})
    return split, report


def collate_kto(examples: list[dict], pad_id: int) -> dict:
    """Matched rows (prompt_i + completion_i) and mismatched rows (prompt_i + completion_{i+1}) for z0."""
    n = len(examples)
    matched = [(e["prompt_ids"], e["completion_ids"]) for e in examples]
    mismatched = [(e["prompt_ids"], examples[(i + 1) % n]["completion_ids"]) for i, e in enumerate(examples)]
    return {**_rows(matched, pad_id, ""), **_rows(mismatched, pad_id, "kl_"),
            "desirable": torch.tensor([e["desirable"] for e in examples]), "num_rows": n}


def _rows(pairs: list[tuple[list[int], list[int]]], pad_id: int, prefix: str) -> dict:
    ids = [p + c for p, c in pairs]
    return {
        f"{prefix}input_ids": pad_sequences(ids, pad_id),
        f"{prefix}attention_mask": pad_sequences([[1] * len(x) for x in ids], 0),
        f"{prefix}labels_mask": pad_sequences([[False] * len(p) + [True] * len(c) for p, c in pairs], False),
    }


def kto_loss_step(model, batch: dict, settings: KTOSettings, reference):
    """Summed KTO loss over the batch's completions, and metric sums."""
    policy_logps = sequence_logps(model, batch, "")
    with torch.no_grad():
        kl_policy = sequence_logps(model, batch, "kl_")
        with _reference_mode(reference, settings.reference):
            ref_logps = sequence_logps(reference, batch, "")
            kl_ref = sequence_logps(reference, batch, "kl_")
    z0 = kl_reference_point(kl_policy, kl_ref)
    losses, rewards = kto_loss(policy_logps, ref_logps, batch["desirable"], z0, beta=settings.beta,
                               desirable_weight=settings.desirable_weight,
                               undesirable_weight=settings.undesirable_weight)
    return losses.sum(), kto_metrics(rewards, policy_logps.detach(), batch["desirable"], z0)


def sequence_logps(model, batch: dict, prefix: str) -> torch.Tensor:
    """log pi(completion | prompt) summed over the completion's tokens: [B]."""
    rows = {"input_ids": batch[f"{prefix}input_ids"], "attention_mask": batch[f"{prefix}attention_mask"],
            "labels_mask": batch[f"{prefix}labels_mask"]}
    logps, scored, _ = next_token_logps(model, rows)
    return (logps * scored).sum(-1)


class _reference_mode:
    """For reference=adapter, the reference is the policy itself with its LoRA adapter off (and in eval mode)."""

    def __init__(self, reference, kind: str) -> None:
        self.model = unwrap(reference) if kind == "adapter" else None
        self.context = None

    def __enter__(self):
        if self.model is not None:
            self.was_training = self.model.training
            self.model.eval()
            self.context = self.model.disable_adapter()
            self.context.__enter__()

    def __exit__(self, *exc):
        if self.model is not None:
            self.context.__exit__(*exc)
            self.model.train(self.was_training)
