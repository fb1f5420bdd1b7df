"""`alignkit pretrain`: causal language modelling on raw text, for small models built from scratch.

Texts are joined with EOS and cut into blocks of data.max_length tokens (packing: no padding is wasted);
every token is a target.
"""

from __future__ import annotations

from alignkit.config import PretrainConfig
from alignkit.data.collate import collate_sft
from alignkit.data.tokenize import pack_texts
from alignkit.losses.sft import nll_sum
from alignkit.models.forward import next_token_logps
from alignkit.models.load import load_policy, save_pretrained
from alignkit.recipes.common import RunResult, finish, load_train_eval, start
from alignkit.train.distributed import to_device
from alignkit.train.loop import fit
from alignkit.train.run import Run


def main(cfg: PretrainConfig) -> RunResult:
    d = start(cfg)
    model, tokenizer = load_policy(cfg.model, d.device)

    rows, eval_rows = load_train_eval(cfg.data, ["text"], cfg.seed)
    blocks = pack_texts(rows, tokenizer, cfg.data.max_length)
    eval_blocks = pack_texts(eval_rows, tokenizer, cfg.data.max_length) if eval_rows is not None else None
    run = Run.create("pretrain", cfg, d)
    if d.is_main:
        n_tokens = sum(len(b["input_ids"]) for b in blocks)
        print(f"{len(rows):,} texts -> {n_tokens:,} tokens in {len(blocks):,} blocks of up to {cfg.data.max_length}")

    collate = lambda examples: to_device(collate_sft(examples, tokenizer.pad_token_id), d.device)  # noqa: E731
    result = fit(run, model, blocks, collate, lm_loss_step, eval_examples=eval_blocks)
    if result.stopped == "done" and d.is_main:
        save_pretrained(model, tokenizer, run.dir / "final")
    return finish(run.dir, result, d)


def lm_loss_step(model, batch: dict):
    logps, scored, _ = next_token_logps(model, batch)
    return nll_sum(logps, scored), {}
