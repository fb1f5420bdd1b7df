"""`alignkit generate`: a file of prompts in, a JSONL of sampled completions out.

Each input row needs `prompt` (a string, or a message list ending in a user turn); its other columns are
kept. Each output row is the input row plus `completion`, `sample` (0..n-1) and `truncated` (the length
limit cut it before EOS), so the file feeds `alignkit score` and annotation as it is.
"""

from __future__ import annotations

import time

from alignkit.config import ModelSettings
from alignkit.data.io import read_rows, write_jsonl
from alignkit.errors import AlignkitError
from alignkit.generation.sampler import SamplingSettings, generate


def generate_file(model_path: str, source: str, out: str, settings: SamplingSettings, batch_size: int = 64) -> dict:
    from alignkit.data.tokenize import render_messages
    from alignkit.models.load import load_policy

    model, tokenizer = load_policy(ModelSettings(path=model_path))
    rows = read_rows(source)
    prompts = []
    for row, where in zip(rows.rows, rows.locations):
        prompt = row.get("prompt")
        if isinstance(prompt, str) and prompt.strip():
            prompts.append(prompt)
        elif isinstance(prompt, list) and prompt:
            text = render_messages(tokenizer, prompt, add_generation_prompt=True)
            prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            raise AlignkitError(f"{where}: 'prompt' must be a non-empty string or message list, got {prompt!r}")
    started, tokens, written = time.perf_counter(), 0, []
    for start in range(0, len(prompts), batch_size):
        out_batch = generate(model, tokenizer, prompts[start : start + batch_size], settings)
        tokens += int(out_batch.response_mask.sum())
        for i, text in enumerate(out_batch.texts):
            row = rows.rows[start + i // settings.n]
            written.append({**row, "completion": text, "sample": i % settings.n,
                            "truncated": bool(out_batch.truncated[i])})
    seconds = time.perf_counter() - started
    write_jsonl(out, written)
    truncated = sum(r["truncated"] for r in written)
    return {"rows": len(written), "tokens_per_s": tokens / max(seconds, 1e-9), "truncated": truncated}

