"""Sampling responses from a causal LM: batched, left-padded, incremental decoding with the model's KV cache.

`sampler.generate` turns prompts into `Generations` (ids, masks, the sampling policy's log-probs, texts) for
on-policy recipes (PPO, GRPO, online DPO). Importing this package must not import transformers.
"""
