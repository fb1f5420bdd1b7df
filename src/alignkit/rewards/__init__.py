"""Reward functions for GRPO/RLOO-style training: plain callables
`(prompts, completions, **columns) -> list[float | None]`, one score per completion, where None means
"could not be scored" and masks the sample out of the update. `rules.py` holds the built-in rule rewards,
`compose.py` loads user functions by name, runs them defensively and sums them with weights.
Standard library only: importing this package must not import torch or transformers.
"""
