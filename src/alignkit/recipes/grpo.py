"""`alignkit grpo`: RL with reward functions and a group baseline instead of a critic.

Each step samples G responses to each of batch_size prompts, scores them with the configured reward
functions and reward models (weighted sum; a failed reward masks its sample out, never scores it 0), turns
the scores into group-relative advantages, and takes PPO-clip steps on them. The variants differ in four
choices, set together by grpo.variant:

| variant  | advantage                      | loss averaged over            | clip (low, high) | extras |
|----------|--------------------------------|-------------------------------|------------------|--------|
| grpo     | (r - mean) / std in the group  | each sequence, then sequences | 0.2, 0.2         |        |
| dr_grpo  | r - mean                       | B * max_new_tokens (constant) | 0.2, 0.2         |        |
| dapo     | (r - mean) / std               | all tokens of the batch       | 0.2, 0.28        | drops all-equal groups; overlong penalty |
| rloo     | r - mean of the other G - 1    | all tokens of the batch       | 0.2, 0.2         |        |

Shao et al. 2024 (GRPO), Liu et al. 2025 (Dr. GRPO), Yu et al. 2025 (DAPO), Ahmadian et al. 2024 (RLOO).
With grpo.kl_coef > 0 the k3 estimate of KL(pi || pi_ref) is added to the loss (GRPO eq. 3-4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from alignkit.config import GRPOConfig, RewardSpec
from alignkit.errors import AlignkitError
from alignkit.losses.policy import aggregate, ppo_clip_loss, token_mean
from alignkit.models.heads import load_scalar_model
from alignkit.models.load import load_policy, load_reference, save_pretrained
from alignkit.ops.advantages import dynamic_sampling_keep, masked_group_advantages, overlong_penalty
from alignkit.ops.kl import kl_k3
from alignkit.recipes.common import RunResult, create_run, reference_settings, start
from alignkit.rewards.compose import load_reward_function, weighted_sum
from alignkit.rewards.prm import ProcessReward, read_prm_info
from alignkit.train import rl
from alignkit.train.loop import StopOnSignal, build_optimizer
from alignkit.train.rollout import (
    Rollout,
    evaluating,
    greedy_rollouts,
    minibatches,
    reference_logps,
    response_logps,
    sample_rollout,
    sequence_scores,
)


@dataclass(frozen=True)
class Variant:
    advantage: str  # a key of ops.advantages.GROUP_ADVANTAGES
    aggregation: str  # a key of losses.policy.AGGREGATIONS
    clip_high: float
    dynamic_sampling: bool = False
    overlong_penalty: bool = False


VARIANTS = {
    "grpo": Variant("grpo", "sequence_mean", 0.2),
    "dr_grpo": Variant("dr_grpo", "constant_length", 0.2),
    "dapo": Variant("grpo", "token_mean", 0.28, dynamic_sampling=True, overlong_penalty=True),
    "rloo": Variant("rloo", "token_mean", 0.2),
}


def main(cfg: GRPOConfig) -> RunResult:
    d = start(cfg)
    rl.single_process(d, "grpo")
    policy, tokenizer = load_policy(cfg.model, d.device)
    g = cfg.grpo
    variant = VARIANTS[g.variant]
    clip_low, clip_high = g.clip_low or 0.2, g.clip_high or variant.clip_high
    overlong_cache = g.overlong_cache or max(1, cfg.rollout.max_new_tokens // 4)
    max_length = cfg.rollout.max_new_tokens if variant.aggregation == "constant_length" else None

    train_rows, eval_rows, train, held_out, reports = rl.prompt_splits(cfg, tokenizer)
    run = create_run("grpo", cfg, d, reports)
    terms = load_reward_terms(g.rewards, tokenizer, d.device)

    reference = None
    if g.kl_coef > 0:
        reference = (load_reference(reference_settings(cfg.model, g.reference_path), d.device)
                     if g.reference == "model" else None)

    optimizer = build_optimizer(policy, cfg.train)
    plan, total_steps = rl.prompt_plan(len(train), cfg)
    step, _ = rl.maybe_resume(run, policy, optimizer, plan)
    bad = rl.BadSteps(run, cfg.train.max_bad_steps)
    metrics: dict[str, float] = {}
    if held_out and step == 0:  # the starting policy's score: the baseline every later eval compares with
        run.log(0, evaluate(policy, tokenizer, terms, held_out, eval_rows.rows, cfg))
    with StopOnSignal() as stop:  # SIGTERM / Ctrl-C: save after the current step, then stop
        while step < total_steps and not stop.requested:
            lr = rl.set_lr(optimizer, cfg, step, total_steps)
            prompts = [train[i] for i in plan.micro_batches(step)[0]]

            # 1. Rollout: G samples per prompt, each scored by every reward term.
            started = time.perf_counter()
            with evaluating(policy):
                rollout = sample_rollout(policy, tokenizer, prompts, cfg.rollout.max_new_tokens,
                                         cfg.rollout.temperature, cfg.rollout.stop_strings, n=g.group_size)
            rewards, per_term, failures = score(terms, rollout, train_rows.rows, g.reward_timeout_s)
            valid = ~torch.isnan(rewards)
            if variant.overlong_penalty:  # DAPO eq. 13: a soft penalty as the length nears the limit
                rewards = rewards + overlong_penalty(rollout.lengths, cfg.rollout.max_new_tokens, overlong_cache)
            advantages, usable = masked_group_advantages(variant.advantage, rewards, valid, g.group_size)
            if variant.dynamic_sampling:  # DAPO eq. 11: groups whose rewards all agree carry no gradient
                varied = dynamic_sampling_keep(rewards, g.group_size, valid)
                usable &= varied.repeat_interleave(g.group_size)
            rollout_s = time.perf_counter() - started

            # 2. Update: PPO-clip on the usable samples, g.epochs passes of minibatches.
            started = time.perf_counter()
            used = usable.nonzero().flatten()
            update = {}
            if len(used):
                batch, batch_advantages = rollout.subset(used), advantages[used]
                size = g.minibatch_size or len(used)
                off_policy = g.epochs > 1 or size < len(used)
                with torch.no_grad(), evaluating(policy):
                    old_logps = response_logps(policy, batch, cfg.rollout.temperature)[0] if off_policy else None
                    ref_logps = (reference_logps(policy, reference, batch, cfg.rollout.temperature)
                                 if g.kl_coef > 0 else None)
                update = train_on(policy, optimizer, batch, batch_advantages, old_logps, ref_logps, cfg,
                                  clip_low, clip_high, variant.aggregation, max_length)
            bad.record(step, update.get("stepped", 0) > 0 or not len(used))
            step += 1

            metrics = {
                "reward": rl.mean(rewards[valid].tolist()), "reward_std": _std(rewards[valid]),
                **{f"rewards/{name}": rl.mean(s for s in scores if s is not None) for name, scores in per_term.items()},
                "reward_failures": float(sum(failures.values())),
                "usable_fraction": float(usable.float().mean()),
                "response_length": float(rollout.lengths.float().mean()),
                "no_eos_rate": float(rollout.truncated.float().mean()),
                **{k: v for k, v in update.items() if k != "stepped"},
                "lr": lr, "rollout_s": rollout_s, "update_s": time.perf_counter() - started,
            }
            if step % cfg.train.log_every == 0 or step == total_steps:
                run.log(step, metrics)
                print(_line(step, total_steps, metrics))
            if held_out and cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < total_steps:
                run.log(step, evaluate(policy, tokenizer, terms, held_out, eval_rows.rows, cfg))
            if cfg.train.save_every and step % cfg.train.save_every == 0 and step < total_steps:
                rl.save(run, policy, optimizer, step, plan, {})
    if stop.requested:
        rl.save(run, policy, optimizer, step, plan, {})
        print(f"stopped by signal after step {step}; checkpoint saved: resume with train.resume=true")
        return RunResult(path=run.dir, metrics=metrics, stopped="interrupted")
    if held_out:
        final_eval = evaluate(policy, tokenizer, terms, held_out, eval_rows.rows, cfg)
        run.log(step, final_eval)
        metrics.update(final_eval)
    rl.save(run, policy, optimizer, step, plan, {})
    save_pretrained(policy, tokenizer, run.dir / "final")
    print(f"done: {step} steps; run folder {run.dir}")
    return RunResult(path=run.dir, metrics=metrics)


def train_on(policy, optimizer, batch: Rollout, advantages: torch.Tensor, old_logps, ref_logps, cfg,
             clip_low: float, clip_high: float, aggregation: str, max_length: int | None) -> dict[str, float]:
    """g.epochs passes of minibatch PPO-clip steps; the mean of each metric over the optimizer steps."""
    g = cfg.grpo
    sums: dict[str, float] = {}
    steps = stepped = 0
    for _ in range(g.epochs):
        for index in minibatches(len(advantages), g.minibatch_size or len(advantages)):
            part = batch.subset(index)
            logps, entropy = response_logps(policy, part, cfg.rollout.temperature, with_entropy=True)
            old = old_logps[index] if old_logps is not None else logps.detach()  # on-policy: the ratio is 1
            loss, m = ppo_clip_loss(logps, old, advantages[index], part.response_mask, clip_low, clip_high,
                                    aggregation, max_length)
            if ref_logps is not None:  # GRPO eq. 3: beta * KL(pi || pi_ref), estimated by k3
                kl = kl_k3(logps, ref_logps[index])
                loss = loss + g.kl_coef * aggregate(aggregation, kl, part.response_mask, max_length)
                m["kl"] = float(token_mean(kl.detach(), part.response_mask))
            m["policy/entropy"] = float(token_mean(entropy, part.response_mask))
            m["loss"] = float(loss.detach())
            grad_norm, ok = rl.guarded_step(policy, optimizer, loss, cfg.train.max_grad_norm)
            m["grad_norm"] = grad_norm
            stepped += ok
            steps += 1
            for key, value in m.items():
                sums[key] = sums.get(key, 0.0) + value
    return {**{k: v / steps for k, v in sums.items()}, "stepped": float(stepped)}



# ---- rewards ----


@dataclass
class RewardTerm:
    name: str
    weight: float
    fallback: bool = False  # scores only the samples the other terms declined (RewardSpec.fallback)
    function: object = None  # (prompts, completions, **columns) -> list[float | None]
    model: torch.nn.Module | None = None  # a reward model scoring the rollout's token ids directly


def load_reward_terms(specs: list[RewardSpec], tokenizer, device) -> list[RewardTerm]:
    """The configured rewards; user code is imported here, only because the config names it."""
    terms = []
    for spec in specs:
        if spec.function is not None:
            terms.append(RewardTerm(spec.function, spec.weight, spec.fallback,
                                    function=load_reward_function(spec.function)))
            continue
        if read_prm_info(spec.model) is not None:  # a PRM reads the completion's steps from its text
            reward = ProcessReward(spec.model, spec.reduce or "min", device=device)
            terms.append(RewardTerm(f"prm:{spec.model}", spec.weight, spec.fallback, function=reward))
            continue
        if spec.reduce is not None:
            raise AlignkitError(f"reward model {spec.model} is not a process reward model (no prm.json): drop "
                                "`reduce`, which only PRMs read")
        from alignkit.config import ModelSettings

        model, model_tokenizer = load_scalar_model(ModelSettings(path=spec.model), device, new_head=False)
        if model_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise AlignkitError(f"reward model {spec.model} uses another tokenizer than the policy; it scores the "
                                "policy's token ids as they are, so train it from the policy's tokenizer")
        model.requires_grad_(False)
        terms.append(RewardTerm(f"model:{spec.model}", spec.weight, spec.fallback, model=model.eval()))
    return terms


def score(terms: list[RewardTerm], rollout: Rollout, rows: list[dict], timeout_s: float | None
          ) -> tuple[torch.Tensor, dict[str, list], dict[str, int]]:
    """Weighted total per sample ([N] float, NaN where masked: compose.weighted_sum), each term's scores,
    failure counts."""
    sources = [rows[i] for i in rollout.rows]
    prompts = [row["prompt"] for row in sources]
    keys = sorted({key for row in sources for key in row} - {"prompt"})
    columns = {key: [row.get(key) for row in sources] for key in keys}
    functions = []
    for term in terms:
        if term.model is not None:
            model_scores = sequence_scores(term.model, rollout).tolist()
            fn = lambda p, c, _s=model_scores, **_: _s  # noqa: E731 - scored on token ids above
            fn.__name__ = term.name
        else:
            fn = term.function
        functions.append((fn, term.weight))
    totals, per_term, failures = weighted_sum(functions, prompts, rollout.texts, columns, timeout_s,
                                              fallback=[term.fallback for term in terms])
    rewards = torch.tensor([float("nan") if t is None else t for t in totals])
    return rewards, per_term, failures


@torch.no_grad()
def evaluate(policy, tokenizer, terms, examples: list[dict], rows: list[dict], cfg) -> dict[str, float]:
    """Greedy answers to the held-out prompts, scored by the reward terms: eval/reward, eval/rewards/*."""
    parts, per_term_all = [], {}
    r = cfg.rollout
    for rollout in greedy_rollouts(policy, tokenizer, examples, r.max_new_tokens, r.stop_strings):
        rewards, per_term, _ = score(terms, rollout, rows, cfg.grpo.reward_timeout_s)
        parts.append(rewards)
        for name, scores in per_term.items():
            per_term_all.setdefault(name, []).extend(s for s in scores if s is not None)
    rewards = torch.cat(parts)
    return {"eval/reward": rl.mean(rewards[~torch.isnan(rewards)].tolist()),
            **{f"eval/rewards/{k}": rl.mean(v) for k, v in per_term_all.items()}}


def _std(x: torch.Tensor) -> float:
    return float(x.std()) if x.numel() > 1 else 0.0


def _line(step: int, total: int, m: dict) -> str:
    return (f"step {step}/{total}  reward {m['reward']:.3f}  length {m['response_length']:.1f}  "
            f"rollout {m['rollout_s']:.1f}s  update {m['update_s']:.1f}s")
