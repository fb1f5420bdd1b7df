"""`alignkit sft`: supervised fine-tuning on demonstrations.

Cross-entropy on the response tokens only (the prompt is context, not a target), including the EOS token
so the model learns to stop. Rows: prompt+completion or messages (DESIGN section 3).
"""

from __future__ import annotations

from functools import partial

from alignkit.config import SFTConfig
from alignkit.data.collate import collate_sft, collate_sft_packed
from alignkit.data.tokenize import tokenize_sft
from alignkit.losses.sft import nll_sum
from alignkit.models.forward import next_token_logps, token_accuracy_sum
from alignkit.models.load import load_policy, save_pretrained
from alignkit.recipes.common import RunResult, create_run, finish, start, tokenized_splits
from alignkit.train.distributed import to_device
from alignkit.train.loop import fit


def main(cfg: SFTConfig) -> RunResult:
    d = start(cfg)
    model, tokenizer = load_policy(cfg.model, d.device)

    tokenize = partial(tokenize_sft, tokenizer=tokenizer, max_length=cfg.data.max_length,
                       truncation=cfg.data.truncation)
    train_examples, eval_examples, reports = tokenized_splits(cfg, ["sft"], tokenize)
    run = create_run("sft", cfg, d, reports)

    pack = collate_sft_packed if cfg.data.packing else collate_sft
    collate = lambda examples: to_device(pack(examples, tokenizer.pad_token_id), d.device)  # noqa: E731
    result = fit(run, model, train_examples, collate, sft_loss_step, eval_examples=eval_examples)
    if result.stopped == "done" and d.is_main:
        save_pretrained(model, tokenizer, run.dir / "final")
    return finish(run.dir, result, d)


def sft_loss_step(model, batch: dict):
    """Summed NLL of the response tokens and the number of them predicted exactly."""
    logps, scored, logits = next_token_logps(model, batch)
    accuracy = token_accuracy_sum(logits, batch["input_ids"], scored)
    return nll_sum(logps, scored), {"mean_token_accuracy": accuracy}
