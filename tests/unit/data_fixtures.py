"""Shared helpers for the data tests: a real byte-level BPE tokenizer trained in a second, chat templates,
and writers for row files. Plain functions, not pytest fixtures, so any test module can import them."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PAD, EOS = "<|pad|>", "<|eos|>"

CORPUS = [
    "User: what is two plus two?\nAssistant: two plus two is four.",
    "User: name a color\nAssistant: blue is a color.",
    "User: what is the capital of France?\nAssistant: the capital of France is Paris.",
    "User: say hello\nAssistant: hello there, how are you?",
    "User: count to three\nAssistant: one, two, three.",
    "System: you are terse.\nUser: is the sky blue?\nAssistant: yes.",
    "User: tell me a story\nAssistant: once upon a time there was a cat.",
    "User: what do cats eat?\nAssistant: cats eat fish and mice.",
    "User: what is a dog?\nAssistant: a dog is an animal that barks.",
    "User: write a number\nAssistant: seven is a number.",
    "User: spell cat\nAssistant: c a t.",
    "User: is water wet?\nAssistant: water is wet, mostly.",
    # "::" appears often enough to become one token: the boundary-merge test relies on it.
    "a::b c::d e::f g::h ::x ::y ::z",
] * 3

# DESIGN.md section 3's plain format as a Jinja chat template: the ids must equal the no-template path.
PLAIN_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ 'System: ' + m['content'] + '\\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ 'User: ' + m['content'] + '\\n' }}"
    "{%- else -%}{{ 'Assistant: ' + m['content'] + eos_token }}"
    "{%- if not loop.last or add_generation_prompt %}{{ '\\n' }}{% endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)
# A template that glues the reply to "Assistant:" with no space: a reply starting with ":" then merges with
# the prompt's last ":" into the "::" token, so the prompt's ids are no longer a prefix.
GLUED_TEMPLATE = PLAIN_TEMPLATE.replace("'Assistant: ' + m['content']", "'Assistant:' + m['content']")
# A template that trims contents, as many real ones do: "Paris" and "Paris " render the same.
TRIMMING_TEMPLATE = PLAIN_TEMPLATE.replace("m['content']", "(m['content'] | trim)")


@lru_cache(maxsize=1)
def _trained_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer.to_str()


def make_tokenizer(chat_template: str | None = None):
    """A fresh transformers tokenizer (pad id 0, eos id 1) around the trained BPE; optionally templated."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_json()), eos_token=EOS, pad_token=PAD
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows_of(records: list[dict], name: str = "data.jsonl"):
    """In-memory Rows with JSONL-style locations name:1, name:2, ..."""
    from alignkit.data.io import Rows

    return Rows(name, list(records), [f"{name}:{i}" for i in range(1, len(records) + 1)])


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}
