"""Over-optimisation curves (Gao et al. 2023, "Scaling laws for reward model overoptimization"): score every
checkpoint of an RL run by the proxy reward it optimised and by the gold judge, against sqrt(KL) to the
starting policy, so the point where pushing the proxy stops helping the true objective is visible.

For each checkpoint (and the starting model as step 0) the policy samples one response per held-out prompt
at temperature 1; on those samples we take the reward model's mean score (proxy), the demo world's gold
judge's mean score (gold), and the mean over samples of sum_t (log pi - log pi_ref) (k1, an unbiased
estimate of KL(pi || pi_ref) on the policy's own samples). Written to <run>/overoptimization.json as a list
of {"step", "kl", "proxy", "gold"}, which `alignkit report` plots.
"""

from __future__ import annotations

from pathlib import Path

import torch

from alignkit.errors import AlignkitError


def run_settings(run_dir: Path):
    """The run's resolved config, read back from its config.yaml."""
    from alignkit.config import load_config, recipe_of

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise AlignkitError(f"{run_dir} is not a run folder (no config.yaml): point at runs/<name>")
    recipe = recipe_of(path)
    if recipe not in ("ppo", "grpo"):
        raise AlignkitError(f"{run_dir} is a {recipe} run; over-optimisation curves are for ppo and grpo runs")
    return load_config(recipe, path)


def load_checkpoint_policy(policy, checkpoint: Path, recipe: str) -> None:
    """Copy a checkpoint's policy weights into `policy` (PPO checkpoints hold policy.* and value.*)."""
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "trainable.safetensors")
    if recipe == "ppo":
        weights = {k.removeprefix("policy."): v for k, v in weights.items() if k.startswith("policy.")}
    params = dict(policy.named_parameters())
    missing = [k for k in weights if k not in params]
    if missing:
        raise AlignkitError(f"{checkpoint} does not fit the run's policy (e.g. {missing[:2]}): was it written by "
                            "another version of the run?")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def overoptimization_points(run_dir: str | Path, prompts: str, reward_model: str, limit: int = 200,
                            max_new_tokens: int = 64, world_seed: int = 0, seed: int = 0) -> list[dict]:
    from alignkit.config import ModelSettings
    from alignkit.data.io import read_rows
    from alignkit.data.tokenize import tokenize_prompts
    from alignkit.demo.judge import gold_score
    from alignkit.demo.world import World
    from alignkit.models.heads import load_scalar_model
    from alignkit.models.load import load_policy, load_reference
    from alignkit.recipes.common import reference_settings
    from alignkit.train.checkpoint import list_checkpoints
    from alignkit.train.rollout import evaluating, response_logps, sample_rollout, sequence_scores

    run_dir = Path(run_dir)
    cfg = run_settings(run_dir)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise AlignkitError(f"{run_dir} has no checkpoints: train with train.save_every=N and a train.keep_last "
                            "large enough to keep them all")
    policy, tokenizer = load_policy(cfg.model)
    reference = load_reference(reference_settings(cfg.model, None))
    scorer, _ = load_scalar_model(ModelSettings(path=reward_model), new_head=False)
    scorer.eval()
    rows = read_rows(prompts)
    examples, _ = tokenize_prompts(rows, tokenizer, cfg.data.max_prompt_length, "drop")
    examples = examples[:limit]
    world = World(world_seed)
    points = []
    for step, checkpoint in [(0, None), *[(int(c.name[5:]), c) for c in checkpoints]]:
        if checkpoint is not None:
            load_checkpoint_policy(policy, checkpoint, cfg.recipe)
        torch.manual_seed(seed)  # the same sampling noise for every checkpoint
        proxy, gold, kl = [], [], []
        with torch.no_grad(), evaluating(policy):
            for start in range(0, len(examples), 64):
                batch = sample_rollout(policy, tokenizer, examples[start : start + 64], max_new_tokens, 1.0)
                proxy += sequence_scores(scorer, batch).tolist()
                log_ratio = response_logps(policy, batch)[0] - response_logps(reference, batch)[0]
                kl += log_ratio.sum(-1).tolist()
                gold += [gold_score(world, rows.rows[r]["prompt"], text) for r, text in zip(batch.rows, batch.texts)]
        points.append({"step": step, "kl": sum(kl) / len(kl), "proxy": sum(proxy) / len(proxy),
                       "gold": sum(gold) / len(gold)})
        print(f"step {step}: kl {points[-1]['kl']:.3f}  proxy {points[-1]['proxy']:.3f}  gold {points[-1]['gold']:.3f}")
    return points


def write_overoptimization(run_dir: str | Path, prompts: str, reward_model: str, **options) -> Path:
    from alignkit.data.io import write_json

    points = overoptimization_points(run_dir, prompts, reward_model, **options)
    path = Path(run_dir) / "overoptimization.json"
    write_json(path, points)
    return path
