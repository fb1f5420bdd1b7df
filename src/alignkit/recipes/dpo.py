"""`alignkit dpo`: direct preference optimisation and its variants (IPO, cDPO, rDPO, SLiC, SimPO, ORPO).

Each step scores the chosen and rejected responses of every pair under the policy (one forward: with the
shared_prompt layout the prompt is computed once), takes the reference's log-probs (a frozen model, the
policy with its LoRA adapter off, or a cache computed before training), and applies the loss named by
dpo.loss from losses/preference.py. Metrics use TRL's names: rewards/chosen, rewards/margins, ...
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from alignkit.config import DPOConfig, DPOSettings
from alignkit.data.pairs import collate_pairs
from alignkit.data.tokenize import tokenize_preference
from alignkit.errors import AlignkitError
from alignkit.losses.preference import orpo_nll, preference_loss, preference_metrics
from alignkit.models.forward import pair_logps
from alignkit.models.load import load_policy, load_reference, save_pretrained, unwrap
from alignkit.recipes.common import RunResult, create_run, finish, reference_settings, start, tokenized_splits
from alignkit.train.distributed import to_device
from alignkit.train.loop import fit

AVERAGED = ("ipo",)  # losses defined on per-token mean log-probs (IPO as TRL implements it)
LENGTH_NORMALISED = ("simpo", "orpo")  # reference-free losses that take lengths
CACHE_FILE = "reference_logps.safetensors"


def main(cfg: DPOConfig) -> RunResult:
    d = start(cfg)
    policy, tokenizer = load_policy(cfg.model, d.device)

    tokenize = partial(tokenize_preference, tokenizer=tokenizer, max_length=cfg.data.max_length,
                       truncation=cfg.data.truncation)
    train_pairs, eval_pairs, reports = tokenized_splits(cfg, ["preference", "ranked"], tokenize)
    eval_pairs = eval_pairs or []
    run = create_run("dpo", cfg, d, reports)

    def collate(examples: list[dict]) -> dict:
        return to_device(with_cached_reference(collate_pairs(examples, tokenizer.pad_token_id, cfg.dpo.layout),
                                               examples), d.device)

    reference = None
    if cfg.dpo.reference == "model":
        reference = frozen_reference(load_reference(reference_settings(cfg.model, cfg.dpo.reference_path), d.device))
    elif cfg.dpo.reference == "adapter":
        reference = adapter_off_reference(policy)
    elif cfg.dpo.reference == "cached":
        attach_reference_cache(cfg, run.dir, train_pairs + eval_pairs, collate, d.device)

    step = partial(dpo_loss_step, settings=cfg.dpo, reference=reference)
    result = fit(run, policy, train_pairs, collate, step, weight_key="num_pairs", eval_examples=eval_pairs or None)
    if result.stopped == "done" and d.is_main:
        save_pretrained(policy, tokenizer, run.dir / "final")
    return finish(run.dir, result, d)


def dpo_loss_step(model, batch: dict, settings: DPOSettings, reference=None):
    """Summed preference loss over the batch's pairs, and TRL-named metric sums."""
    chosen, rejected, chosen_len, rejected_len = pair_logps(model, batch)  # [B] each
    if reference is not None:
        ref_chosen, ref_rejected = reference(batch)
    else:
        ref_chosen, ref_rejected = batch.get("ref_chosen_logps"), batch.get("ref_rejected_logps")
    lengths = {}
    policy_chosen, policy_rejected = chosen, rejected
    if settings.loss in AVERAGED:
        policy_chosen, policy_rejected = chosen / chosen_len, rejected / rejected_len
        ref_chosen, ref_rejected = ref_chosen / chosen_len, ref_rejected / rejected_len
    elif settings.loss in LENGTH_NORMALISED:
        lengths = {"chosen_lengths": chosen_len, "rejected_lengths": rejected_len}
    losses, chosen_rewards, rejected_rewards = preference_loss(
        settings.loss, policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=settings.beta,
        label_smoothing=settings.label_smoothing, gamma=settings.gamma, **lengths,
    )
    if settings.loss == "orpo":
        losses = losses + orpo_nll(chosen, chosen_len)  # ORPO = SFT loss + odds-ratio term (Hong et al. 2024)
    if settings.nll_weight:
        # RPO (Pang et al. 2024): keep the chosen response likely while pushing the margin.
        losses = losses + settings.nll_weight * (-chosen / chosen_len)
    metrics = preference_metrics(chosen_rewards, rejected_rewards, chosen.detach(), rejected.detach())
    return losses.sum(), metrics


def frozen_reference(model):
    """Reference log-probs from a separate frozen model (no graph, eval mode)."""

    def logps(batch: dict):
        with torch.no_grad():
            chosen, rejected, _, _ = pair_logps(model, batch)
        return chosen, rejected

    return logps


def adapter_off_reference(policy):
    """The policy with its LoRA adapter switched off is the SFT model: no second copy in memory."""

    def logps(batch: dict):
        model = unwrap(policy)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), model.disable_adapter():
                chosen, rejected, _, _ = pair_logps(model, batch)
        finally:
            model.train(was_training)
        return chosen, rejected

    return logps


def with_cached_reference(batch: dict, examples: list[dict]) -> dict:
    """Carry precomputed reference log-probs of the examples (reference=cached) into the batch."""
    if examples and "ref_chosen_logps" in examples[0]:
        batch["ref_chosen_logps"] = torch.tensor([e["ref_chosen_logps"] for e in examples])
        batch["ref_rejected_logps"] = torch.tensor([e["ref_rejected_logps"] for e in examples])
    return batch


def attach_reference_cache(cfg: DPOConfig, run_dir: Path, pairs: list[dict], collate, device) -> None:
    """Compute the reference's log-probs of every pair once (or load them), save them, attach to the pairs."""
    key = data_key(pairs, cfg.dpo.reference_path or cfg.model.path)
    if cfg.dpo.reference_cache:
        chosen, rejected = read_cache(Path(cfg.dpo.reference_cache), key, len(pairs))
    else:
        score = frozen_reference(load_reference(reference_settings(cfg.model, cfg.dpo.reference_path), device))
        chosen, rejected = [], []
        for start in range(0, len(pairs), cfg.train.batch_size):
            c, r = score(collate(pairs[start : start + cfg.train.batch_size]))
            chosen.append(c.cpu())
            rejected.append(r.cpu())
        chosen, rejected = torch.cat(chosen), torch.cat(rejected)
        save_file({"chosen": chosen, "rejected": rejected}, str(run_dir / CACHE_FILE), metadata={"key": key})
    for pair, c, r in zip(pairs, chosen.tolist(), rejected.tolist()):
        pair["ref_chosen_logps"], pair["ref_rejected_logps"] = c, r


def data_key(pairs: list[dict], reference: str) -> str:
    """A fingerprint of the tokenized pairs and the reference, so a cache is never applied to other data."""
    digest = hashlib.sha256(reference.encode())
    for p in pairs:
        digest.update(json.dumps([p["prompt_ids"], p["chosen_ids"], p["rejected_ids"]]).encode())
    return digest.hexdigest()


def read_cache(path: Path, key: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    file = path / CACHE_FILE if path.is_dir() else path
    if not file.is_file():
        raise AlignkitError(f"dpo.reference_cache={path}: no {CACHE_FILE} there (it is written by a run with "
                            f"dpo.reference=cached)")
    from safetensors import safe_open

    with safe_open(str(file), "pt") as f:
        saved_key = (f.metadata() or {}).get("key")
    tensors = load_file(str(file))
    if saved_key != key or tensors["chosen"].numel() != count:
        raise AlignkitError(f"dpo.reference_cache={path} was computed for other data, tokenizer settings or "
                            f"reference model: drop reference_cache to compute it afresh")
    return tensors["chosen"], tensors["rejected"]
