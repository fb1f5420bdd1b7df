"""`alignkit ppo`: RLHF with PPO, as InstructGPT trained it (Ouyang et al. 2022; Ziegler et al. 2019).

Four models: the policy (trained), a frozen reference (the starting policy, or the policy with its LoRA
adapter off), a frozen reward model, and a value model (the critic, trained; by default it starts from the
reward model). Each step:

1. sample a response to each of batch_size prompts (temperature rollout.temperature);
2. score: the reward model reads the whole sequence at its last real token; the score is normalised with
   the reward run's saved mean and std (reward_stats.json), a response cut at max_new_tokens loses
   ppo.missing_eos_penalty, and the result is clipped to [-reward_clip, reward_clip];
3. per-token rewards: -kl_coef * kl_t on every response token, plus the score on the last one
   (InstructGPT eq. 2; kl_t estimated by ppo.kl_estimator, k1 by default as in OpenRLHF);
4. GAE advantages and returns from the critic's values (Schulman et al. 2016), advantages whitened over
   the rollout;
5. ppo.epochs passes of minibatch steps on PPO-clip (Schulman et al. 2017, eq. 7) plus vf_coef times the
   clipped value loss, each averaged over response tokens; with ppo.ptx_coef > 0 each minibatch step also
   adds ptx_coef times the mean next-token NLL of a batch of ppo.ptx_data blocks (PPO-ptx, InstructGPT
   eq. 2's gamma term: it keeps what pretraining taught while the policy chases the reward);
6. with ppo.kl_target set, the KL coefficient adapts toward the target (Ziegler et al. 2019, sec. 2.2).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from alignkit.config import ModelSettings, PPOConfig
from alignkit.errors import AlignkitError
from alignkit.losses.policy import explained_variance, ppo_clip_loss, token_mean, value_clip_loss
from alignkit.models.heads import is_reward_config, load_scalar_model
from alignkit.models.load import load_policy, load_reference, save_pretrained
from alignkit.ops.advantages import gae, masked_whiten
from alignkit.ops.kl import ESTIMATORS, AdaptiveKL, FixedKL, shaped_token_rewards
from alignkit.recipes.common import RunResult, create_run, reference_settings, start
from alignkit.train import rl
from alignkit.train.loop import StopOnSignal, build_optimizer
from alignkit.train.rollout import (
    Rollout,
    evaluating,
    greedy_rollouts,
    minibatches,
    reference_logps,
    response_logps,
    response_values,
    sample_rollout,
    sequence_scores,
)


def main(cfg: PPOConfig) -> RunResult:
    d = start(cfg)
    rl.single_process(d, "ppo")
    p = cfg.ppo
    policy, tokenizer = load_policy(cfg.model, d.device)
    reward_model = frozen(load_matching_scalar_model(p.reward_model, tokenizer, d.device, "reward model"))
    stats = reward_stats(p.reward_model) if p.normalize_reward else None
    value_model = load_matching_scalar_model(p.value_model or p.reward_model, tokenizer, d.device, "value model")
    value_model.train()
    reference = (load_reference(reference_settings(cfg.model, p.reference_path), d.device)
                 if p.reference == "model" else None)

    train_rows, eval_rows, train, held_out, reports = rl.prompt_splits(cfg, tokenizer)
    run = create_run("ppo", cfg, d, reports)

    models = torch.nn.ModuleDict({"policy": policy, "value": value_model})  # one optimizer, one checkpoint
    optimizer = build_optimizer(models, cfg.train)
    kl_control = AdaptiveKL(p.kl_coef, p.kl_target, p.kl_horizon) if p.kl_target else FixedKL(p.kl_coef)
    plan, total_steps = rl.prompt_plan(len(train), cfg)
    ptx = PtxBatches(p.ptx_data, tokenizer, p.ptx_block, p.minibatch_size, cfg.seed, d.device) if p.ptx_coef else None
    step, state = rl.maybe_resume(run, models, optimizer, plan)
    kl_control.coef = state.get("kl_coef", kl_control.coef)
    bad = rl.BadSteps(run, cfg.train.max_bad_steps)
    metrics: dict[str, float] = {}
    if held_out and step == 0:  # the starting policy's score: the baseline every later eval compares with
        run.log(0, evaluate(policy, tokenizer, reward_model, held_out, cfg))
    with StopOnSignal() as stop:  # SIGTERM / Ctrl-C: save after the current step, then stop
        while step < total_steps and not stop.requested:
            lr = rl.set_lr(optimizer, cfg, step, total_steps)
            prompts = [train[i] for i in plan.micro_batches(step)[0]]

            # 1-4. Rollout and everything computed once per rollout, with no gradient.
            started = time.perf_counter()
            with torch.no_grad(), evaluating(policy, value_model):
                rollout = sample_rollout(policy, tokenizer, prompts, cfg.rollout.max_new_tokens,
                                         cfg.rollout.temperature, cfg.rollout.stop_strings)
                old_logps = response_logps(policy, rollout, cfg.rollout.temperature)[0]  # [N, R]
                ref_logps = reference_logps(policy, reference, rollout, cfg.rollout.temperature)
                old_values = response_values(value_model, rollout)  # [N, R]
                raw_scores = sequence_scores(reward_model, rollout)  # [N]
            scores = shape_scores(raw_scores, rollout.truncated, stats, p.missing_eos_penalty, p.reward_clip)
            kl = ESTIMATORS[p.kl_estimator](old_logps, ref_logps)  # [N, R], 0 off the response
            token_rewards = shaped_token_rewards(scores, kl, rollout.response_mask, kl_control.coef)
            advantages, returns = gae(token_rewards, old_values, rollout.response_mask, p.gamma, p.lam)
            if p.whiten_advantages:
                advantages = masked_whiten(advantages, rollout.response_mask)
            rollout_s = time.perf_counter() - started

            # 5. PPO epochs over minibatches of the rollout.
            started = time.perf_counter()
            update = train_on(models, optimizer, rollout, old_logps, old_values, advantages, returns, cfg,
                              ptx, step)
            bad.record(step, update.pop("stepped") > 0)
            sequence_kl = (kl * rollout.response_mask).sum(-1)  # [N]
            # 6. The coefficient adapts to the KL of this rollout (n = its number of samples).
            coef_used = kl_control.coef
            kl_control.update(float(sequence_kl.mean()), len(sequence_kl))
            step += 1

            metrics = {
                "objective/kl": float(sequence_kl.mean()),
                "objective/scores": float(raw_scores.mean()),
                "objective/normalized_scores": float(scores.mean()),
                "objective/rlhf_reward": float((scores - coef_used * sequence_kl).mean()),
                "objective/kl_coef": coef_used,
                "val/explained_variance": explained_variance(old_values, returns, rollout.response_mask),
                **update,
                "response_length": float(rollout.lengths.float().mean()),
                "no_eos_rate": float(rollout.truncated.float().mean()),
                "lr": lr, "rollout_s": rollout_s, "update_s": time.perf_counter() - started,
            }
            if step % cfg.train.log_every == 0 or step == total_steps:
                run.log(step, metrics)
                print(f"step {step}/{total_steps}  score {metrics['objective/scores']:.3f}  "
                      f"kl {metrics['objective/kl']:.3f}  length {metrics['response_length']:.1f}  "
                      f"rollout {rollout_s:.1f}s  update {metrics['update_s']:.1f}s")
            if held_out and cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < total_steps:
                run.log(step, evaluate(policy, tokenizer, reward_model, held_out, cfg))
            if cfg.train.save_every and step % cfg.train.save_every == 0 and step < total_steps:
                rl.save(run, models, optimizer, step, plan, {"kl_coef": kl_control.coef})
    if stop.requested:
        rl.save(run, models, optimizer, step, plan, {"kl_coef": kl_control.coef})
        print(f"stopped by signal after step {step}; checkpoint saved: resume with train.resume=true")
        return RunResult(path=run.dir, metrics=metrics, stopped="interrupted")
    if held_out:
        final_eval = evaluate(policy, tokenizer, reward_model, held_out, cfg)
        run.log(step, final_eval)
        metrics.update(final_eval)
    rl.save(run, models, optimizer, step, plan, {"kl_coef": kl_control.coef})
    save_pretrained(policy, tokenizer, run.dir / "final")
    print(f"done: {step} steps; run folder {run.dir}")
    return RunResult(path=run.dir, metrics=metrics)


def train_on(models, optimizer, rollout: Rollout, old_logps, old_values, advantages, returns,
             cfg: PPOConfig, ptx: PtxBatches | None = None, step: int = 0) -> dict[str, float]:
    """ppo.epochs passes of minibatch steps; each metric averaged over the optimizer steps."""
    p = cfg.ppo
    policy, value_model = models["policy"], models["value"]
    sums: dict[str, float] = {}
    steps = stepped = 0
    per_step = p.epochs * -(-len(rollout.texts) // p.minibatch_size)  # minibatch steps per PPO step
    for _ in range(p.epochs):
        for index in minibatches(len(rollout.texts), p.minibatch_size):
            part = rollout.subset(index)
            mask = part.response_mask
            logps, entropy = response_logps(policy, part, cfg.rollout.temperature, with_entropy=True)
            policy_loss, m = ppo_clip_loss(logps, old_logps[index], advantages[index], mask, p.clip, p.clip)
            values = response_values(value_model, part)
            value_loss, value_metrics = value_clip_loss(values, old_values[index], returns[index], mask,
                                                        p.value_clip)
            loss = policy_loss + p.vf_coef * value_loss
            if ptx is not None:
                ptx_loss = ptx.loss(policy, step * per_step + steps)  # the n-th minibatch of the run
                loss = loss + p.ptx_coef * ptx_loss
                m["ptx/loss"] = float(ptx_loss.detach())
            grad_norm, ok = rl.guarded_step(models, optimizer, loss, cfg.train.max_grad_norm)
            m.update(value_metrics)
            m.update({"policy/loss": float(policy_loss.detach()), "val/loss": float(value_loss.detach()),
                      "policy/entropy": float(token_mean(entropy, mask)),
                      "loss": float(loss.detach()), "grad_norm": grad_norm})
            stepped += ok
            steps += 1
            for key, value in m.items():
                sums[key] = sums.get(key, 0.0) + value
    return {**{k: v / steps for k, v in sums.items()}, "stepped": float(stepped)}


class PtxBatches:
    """The PPO-ptx data: text rows packed into blocks, visited in a seeded order. The n-th minibatch of a run
    always gets the same blocks, so a resumed run mixes in exactly what an uninterrupted one would."""

    def __init__(self, path: str, tokenizer, block: int, batch_size: int, seed: int, device):
        from alignkit.data.io import read_rows
        from alignkit.data.tokenize import pack_texts

        self.blocks = pack_texts(read_rows(path), tokenizer, block)
        self.order = torch.randperm(len(self.blocks), generator=torch.Generator().manual_seed(seed)).tolist()
        self.batch_size, self.pad_id, self.device = batch_size, tokenizer.pad_token_id, device

    def batch(self, n: int) -> dict[str, torch.Tensor]:
        from alignkit.data.collate import collate_sft

        start = n * self.batch_size
        picks = [self.order[(start + i) % len(self.order)] for i in range(self.batch_size)]
        batch = collate_sft([self.blocks[i] for i in picks], self.pad_id)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def loss(self, policy, n: int) -> torch.Tensor:
        """Mean next-token NLL of the n-th batch under the policy."""
        from alignkit.losses.sft import nll_sum
        from alignkit.models.forward import next_token_logps

        logps, scored, _ = next_token_logps(policy, self.batch(n))
        return nll_sum(logps, scored) / scored.sum().clamp(min=1)


def shape_scores(raw: torch.Tensor, truncated: torch.Tensor, stats: dict | None,
                 missing_eos_penalty: float | None, clip: float | None) -> torch.Tensor:
    """Reward-model scores as PPO uses them: normalised, penalised when cut off, clipped. [N] -> [N]."""
    scores = raw.float()
    if stats is not None:
        scores = (scores - stats["mean"]) / max(stats["std"], 1e-8)
    if missing_eos_penalty:
        scores = scores - missing_eos_penalty * truncated.to(scores.dtype)
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    return scores



def load_matching_scalar_model(path: str, tokenizer, device, role: str):
    """A reward or value model that reads the policy's token ids as they are (same vocabulary)."""
    from transformers import AutoConfig

    try:
        new_head = not is_reward_config(AutoConfig.from_pretrained(path))
    except OSError:
        raise AlignkitError(f"ppo {role} {path}: not a model folder (no config.json); point at the final/ "
                            "folder of an `alignkit reward` run") from None
    if role == "reward model" and new_head:
        raise AlignkitError(f"ppo.reward_model={path} is not a reward model: train one with `alignkit reward` "
                            "and point at its final/ folder")
    model, model_tokenizer = load_scalar_model(ModelSettings(path=path), device, new_head=new_head)
    if model_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise AlignkitError(f"the {role} {path} uses another tokenizer than the policy; it reads the policy's "
                            "token ids as they are, so train it from the policy's tokenizer")
    return model


def frozen(model):
    model.requires_grad_(False)
    return model.eval()


def reward_stats(reward_model: str) -> dict:
    path = Path(reward_model) / "reward_stats.json"
    if not path.is_file():
        raise AlignkitError(f"{path} not found: ppo.normalize_reward needs the reward run's saved statistics "
                            "(`alignkit reward` writes them into final/), or set ppo.normalize_reward=false")
    stats = json.loads(path.read_text())
    if not {"mean", "std"} <= set(stats):
        raise AlignkitError(f"{path}: expected 'mean' and 'std' keys, found {sorted(stats)}")
    return stats


@torch.no_grad()
def evaluate(policy, tokenizer, reward_model, examples: list[dict], cfg: PPOConfig) -> dict[str, float]:
    """Greedy answers to the held-out prompts: the reward model's mean score (eval/score) and length."""
    scores, lengths = [], []
    r = cfg.rollout
    for rollout in greedy_rollouts(policy, tokenizer, examples, r.max_new_tokens, r.stop_strings):
        scores.append(sequence_scores(reward_model, rollout))
        lengths.append(rollout.lengths.float())
    return {"eval/score": float(torch.cat(scores).mean()),
            "eval/response_length": float(torch.cat(lengths).mean())}
