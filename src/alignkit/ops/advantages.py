"""Advantage estimators for RL on LMs: GAE for PPO with a critic, group-relative baselines for GRPO,
Dr. GRPO and RLOO, whitening, and DAPO's dynamic sampling and overlong penalty.

Pure torch: tensors in, tensors out; no models, tokenizers or configs, and never transformers.

Group-relative functions take sequence rewards [B] where each prompt's G samples are consecutive rows
(rows 0..G-1 are prompt 0) and return one advantage per sequence [B]; broadcast it over the response tokens.
"""

from __future__ import annotations

import torch


def gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation, Schulman et al. 2016, eq. 16. [B,T] x3 -> advantages, returns [B,T].

        delta_t = r_t + gamma * V_{t+1} - V_t;   A_t = delta_t + gamma * lam * A_{t+1};   R_t = A_t + V_t

    t runs over each row's response tokens only: masked-out positions are skipped (so a prompt before the
    response, padding after it, or a hole inside it never enters the recursion), and after the last
    response token V = 0 and A = 0 (the episode ends there). Both outputs are 0 outside the response.
    """
    if not (token_rewards.shape == values.shape == response_mask.shape):
        raise ValueError(
            f"gae wants token_rewards, values and response_mask all [B,T]; got {tuple(token_rewards.shape)}, "
            f"{tuple(values.shape)}, {tuple(response_mask.shape)}"
        )
    values = values.detach()
    token_rewards = token_rewards.detach()
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])  # [B] V of the next response token, 0 past the end
    next_advantage = torch.zeros_like(values[:, 0])  # [B]
    for t in reversed(range(values.shape[1])):
        live = response_mask[:, t]
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        # masked positions carry the recursion across unchanged
        next_advantage = torch.where(live, advantage, next_advantage)
        next_value = torch.where(live, values[:, t], next_value)
        advantages[:, t] = torch.where(live, advantage, torch.zeros_like(advantage))
    returns = torch.where(response_mask, advantages + values, torch.zeros_like(values))
    return advantages, returns


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(x - mean) / (std + eps) with mean and std over the entries where mask is True only. [..] -> [..].

    std is the population std (no Bessel correction), so the result has mean 0 and std 1 over the mask.
    shift_mean=False adds the mean back, keeping x's mean and rescaling only (TRL's whiten, used there for
    rewards). Entries outside the mask are 0 in the result.
    """
    if x.shape != mask.shape:
        raise ValueError(f"masked_whiten: x {tuple(x.shape)} and mask {tuple(mask.shape)} differ in shape")
    count = mask.sum()
    if int(count) == 0:
        raise ValueError("masked_whiten: the mask selects no entries, so there is no mean or std to use")
    zero = torch.zeros_like(x)
    mean = torch.where(mask, x, zero).sum() / count
    var = torch.where(mask, (x - mean) ** 2, zero).sum() / count
    whitened = (x - mean) / (var.sqrt() + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, zero)


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B] -> [B/G, G], checking that B is a whole number of groups."""
    if rewards.dim() != 1 or group_size < 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"group-relative advantages want rewards [B] with B a multiple of group_size; got shape "
            f"{tuple(rewards.shape)} and group_size={group_size}"
        )
    return rewards.view(-1, group_size)


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO outcome supervision, Shao et al. 2024 (DeepSeekMath), section 4.1.2: (r - mean) / (std + eps)
    within each group. [B] -> [B].

    std is the sample std (Bessel-corrected, torch.std, as TRL's GRPOTrainer); eps = 1e-4 as there. A group
    whose rewards are all equal gets advantage 0. Needs group_size >= 2.
    """
    if group_size < 2:
        raise ValueError(f"grpo_advantages needs group_size >= 2 to have a std, got {group_size}")
    grouped = _groups(rewards, group_size)  # [B/G, G]
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    return ((grouped - mean) / (std + eps)).flatten()


def dr_grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-like training", eq. 3: r - mean of the group, with
    no division by the std (which over-weights groups that are nearly all right or all wrong). [B] -> [B].
    """
    grouped = _groups(rewards, group_size)
    return (grouped - grouped.mean(dim=1, keepdim=True)).flatten()


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO, Ahmadian et al. 2024, "Back to basics", eq. 6: r_i - mean of the other G-1 rewards of the
    group (= G/(G-1) * (r_i - group mean)). [B] -> [B]. Needs group_size >= 2.
    """
    if group_size < 2:
        raise ValueError(
            f"rloo_advantages needs group_size >= 2 (a leave-one-out baseline), got {group_size}"
        )
    grouped = _groups(rewards, group_size)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).flatten()


GROUP_ADVANTAGES = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}


def dynamic_sampling_keep(
    rewards: torch.Tensor, group_size: int, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """DAPO dynamic sampling, Yu et al. 2025, eq. 11: keep only groups whose rewards are not all equal
    (all-equal groups have zero group-relative advantage and no gradient). [B] -> [B/G] bool.

    With `valid` [B] bool, only the valid samples' rewards are compared (a group with fewer than two valid
    samples is not kept).
    """
    grouped = _groups(rewards, group_size)
    if valid is None:
        return grouped.amax(dim=1) != grouped.amin(dim=1)
    members = valid.view(-1, group_size)
    highest = torch.where(members, grouped, torch.full_like(grouped, float("-inf"))).amax(dim=1)
    lowest = torch.where(members, grouped, torch.full_like(grouped, float("inf"))).amin(dim=1)
    return (members.sum(dim=1) >= 2) & (highest != lowest)


def overlong_penalty(lengths: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO soft overlong punishment, Yu et al. 2025, eq. 13. [B] response lengths -> [B] float penalties:

        0                                       if |y| <= max_len - cache_len
        ((max_len - cache_len) - |y|) / cache_len   if max_len - cache_len < |y| <= max_len
        -1                                      if |y| > max_len

    Added to the task reward.
    """
    if not 0 < cache_len <= max_len:
        raise ValueError(
            f"overlong_penalty needs 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}"
        )
    lengths = lengths.float()
    ramp = ((max_len - cache_len) - lengths) / cache_len
    return ramp.clamp(min=-1.0, max=0.0)


def masked_group_advantages(
    kind: str, rewards: torch.Tensor, valid: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages (GROUP_ADVANTAGES[kind]) when some samples have no reward (a reward
    function failed on them). [B] float, [B] bool -> advantages [B], usable [B] bool.

    A failed sample is masked out, never scored as 0: each group's baseline is computed over its valid
    samples only, as if the group had been that size. Invalid samples get advantage 0 and usable False; a
    group with fewer than 2 valid samples has no baseline, so none of its samples is usable.
    """
    if rewards.shape != valid.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and valid {tuple(valid.shape)} differ in shape")
    grouped = _groups(rewards, group_size)  # [B/G, G]
    grouped_valid = valid.view(-1, group_size)
    advantages = torch.zeros_like(grouped)
    usable = torch.zeros_like(grouped_valid)
    for g in range(grouped.shape[0]):
        members = grouped_valid[g]
        count = int(members.sum())
        if count < 2:
            continue
        advantages[g, members] = GROUP_ADVANTAGES[kind](grouped[g, members], count)
        usable[g] = members
    return advantages.flatten(), usable.flatten()
