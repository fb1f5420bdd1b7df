"""Greedy decoding speed: alignkit's generation engine against transformers' `generate`, same model and prompts.

    python benchmarks/generation.py [--size 1m] [--prompts 64] [--new-tokens 48] [--threads 2] [--model DIR]

Both decode greedily with a KV cache, left-padded prompts from the demo world, no stop strings. Without
--model the model is built locally with random weights and EOS is switched off, so every row decodes the
full length (a fixed amount of work). With --model (a trained folder, e.g. a demo run's runs/sft/final) EOS
is on, as in real use: rows finish at different lengths, alignkit drops finished rows from the batch, and
transformers keeps computing them until the last row ends. Reports response tokens per second (EOS
included), best of 3 after a warm-up, and checks that both produced the same token ids. A benchmark, not a
test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1m")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="a trained model folder: EOS on, as in real use")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from alignkit.demo.build import write_demo_data
    from alignkit.generation.sampler import SamplingSettings, generate
    from alignkit.models.tiny import make_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = Path(tempfile.mkdtemp())
    write_demo_data(work / "world", scale=0.3)  # 150 held-out prompts
    folder = args.model or make_tiny_model(work / "world" / "pretrain.jsonl", work / "model", size=args.size,
                                           vocab_size=1024)
    eos_on = args.model is not None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompts = [line.split('"prompt": "')[1].split('"')[0]
               for line in (work / "world" / "prompts_eval.jsonl").read_text().splitlines()[: args.prompts]]
    settings = SamplingSettings(max_new_tokens=args.new_tokens, temperature=0.0)

    # eos_token_id=-1 for both: no row stops early, so both decode exactly prompts x new_tokens tokens
    tokenizer_for_hf = AutoTokenizer.from_pretrained(folder, padding_side="left")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    enc = tokenizer_for_hf(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def ours():
        if not eos_on:
            model.generation_config.eos_token_id = None
        return generate(model, tokenizer if eos_on else _NoEos(tokenizer), prompts, settings)

    def theirs():
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=args.new_tokens,
                                 min_new_tokens=1 if eos_on else args.new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id if eos_on else None)
        return out[:, enc["input_ids"].shape[1]:]

    reference = ours()
    work_tokens = int(reference.response_mask.sum())  # real response tokens: the same work for both
    results = {}
    for name, fn in (("alignkit generate", ours), ("transformers generate", theirs)):
        fn()
        best = min(_timed(fn) for _ in range(3))
        results[name] = work_tokens / best
    hf = theirs()
    ids = reference.response_ids
    width = min(ids.shape[1], hf.shape[1])
    # HF pads finished rows with pad after EOS; compare the real response tokens only
    same = bool(((ids[:, :width] == hf[:, :width]) | ~reference.response_mask[:, :width]).all())
    mode = f"EOS on, {work_tokens:,} response tokens" if eos_on else "EOS off"
    print(f"greedy, {args.model or args.size} model, {len(prompts)} prompts, up to {args.new_tokens} new tokens "
          f"({mode}), {args.threads} threads")
    for name, tps in results.items():
        print(f"  {name:22} {tps:10,.0f} tokens/s")
    print(f"  same token ids: {same}")


class _NoEos:
    """The tokenizer with EOS hidden, so every row decodes the full length (a fair fixed amount of work)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        if name == "eos_token_id":
            return -1
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
