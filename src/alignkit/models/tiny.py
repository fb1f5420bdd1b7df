"""Build a small Llama-style model and a byte-level BPE tokenizer from scratch, offline.

Tests, smoke runs and the demo use these because nothing can be downloaded. The tokenizer renders the
project's plain chat format (`User: ...\\nAssistant: ...<|eos|>`) through a real chat template, so code that
calls `apply_chat_template` treats a tiny model exactly like a hub model. The saved folder is an ordinary
Hugging Face folder: plain `AutoModelForCausalLM` / `AutoTokenizer` load it without alignkit.
transformers and tokenizers are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alignkit.errors import AlignkitError

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN = "<|pad|>"  # id 0
EOS_TOKEN = "<|eos|>"  # id 1
BYTE_ALPHABET = 256  # byte-level BPE starts from every byte, so any text encodes and decodes exactly

# Llama dimensions of each preset. Parameter counts include the embeddings, at the vocab size in
# PRESET_VOCAB (tied input/output embeddings are counted once):
#   100k:     80,112 at vocab 512,  104,688 at vocab 1,024
#   1m:      935,040 at vocab 1,024
#   5m:    5,008,640 at vocab 1,024
#   40m:  42,476,032 at vocab 16,384 (untied: the output matrix alone is 8.4M)
SIZES: dict[str, dict] = {
    "100k": dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "1m": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=352),
    "5m": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=688),
    "40m": dict(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        intermediate_size=1408,
        tie_word_embeddings=False,
    ),
}
# The vocab size each preset's count above is quoted at; a sensible `vocab_size` for `make_tiny_model`.
PRESET_VOCAB: dict[str, int] = {"100k": 1024, "1m": 1024, "5m": 1024, "40m": 16384}

# The plain format of DESIGN.md §3 as a Jinja chat template. The generation prompt ends in "Assistant:" with
# no space: a response starts with " ", which byte-level BPE attaches to its first word, so the prompt's ids
# stay a prefix of the prompt+response ids.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ 'System: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ 'User: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{%- if not loop.last or add_generation_prompt %}{{ '\\n' }}{% endif -%}"
    "{%- else -%}"
    "{{ raise_exception('unknown chat role ' + message['role'] + ': use system, user or assistant') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (GPT-2, Radford et al. 2019) on `texts`; `<|pad|>` is id 0, `<|eos|>` id 1.

    The vocab may come out smaller than `vocab_size` when the texts hold fewer distinct merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD_TOKEN, EOS_TOKEN]
    if vocab_size < BYTE_ALPHABET + len(specials):
        raise AlignkitError(
            f"vocab_size={vocab_size} is below the {BYTE_ALPHABET + len(specials)} tokens a byte-level BPE "
            f"needs (256 bytes + {PAD_TOKEN} + {EOS_TOKEN}): raise vocab_size (e.g. 1024)"
        )
    backend = Tokenizer(models.BPE())
    # Each digit its own token (as Llama and Qwen do): numbers then read the same everywhere, which a small
    # model needs to learn arithmetic; a merged " 15" next to a split " 4", "3" hides the digits.
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,  # first, so they get ids 0 and 1
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="right",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,  # decode exactly: no " ." -> "." clean-up
    )


def build_model(
    tokenizer: PreTrainedTokenizerBase,
    size: str = "1m",
    max_position_embeddings: int = 1024,
    seed: int = 0,
    **overrides,
) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM sized for `tokenizer`; the same seed gives the same weights.

    `overrides` replace LlamaConfig fields of the preset (e.g. `num_hidden_layers=1`). The global torch RNG is
    left as it was.
    """
    from huggingface_hub.errors import StrictDataclassError
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise AlignkitError(f"unknown model size {size!r}: choose one of {', '.join(SIZES)}")
    known = {field.name for field in dataclasses.fields(LlamaConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise AlignkitError(f"unknown LlamaConfig field(s) {', '.join(unknown)} in build_model overrides")
    dims = {"tie_word_embeddings": True, **SIZES[size], **overrides}
    try:
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=max_position_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,  # the tokenizer adds no BOS
            attention_bias=False,
            mlp_bias=False,
            **dims,
        )
    except (StrictDataclassError, ValueError, TypeError) as err:  # e.g. hidden_size not divisible by heads
        reason = " ".join(str(err.__cause__ or err).split())
        raise AlignkitError(f"model size {size!r} with overrides {overrides}: {reason}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    # generate() reads these: stop on EOS, pad finished rows with the pad id.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def make_tiny_model(
    texts_path: str | Path,
    out_dir: str | Path,
    size: str = "1m",
    vocab_size: int = 1024,
    seed: int = 0,
    max_texts: int | None = None,
) -> Path:
    """Train a tokenizer on the texts, build a random model and save both as a Hugging Face folder.

    `texts_path` is a JSONL file with a `text` column or a .txt file with one text per line. The folder is
    written next to `out_dir` and renamed into place, so `out_dir` is never half-written.
    """
    from alignkit.models.load import save_pretrained

    texts = list(_read_texts(Path(texts_path), max_texts))
    if not texts:
        raise AlignkitError(f"{texts_path}: no non-empty texts to train the tokenizer on")
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_model(tokenizer, size=size, seed=seed)
    tokenizer.model_max_length = model.config.max_position_embeddings
    return save_pretrained(model, tokenizer, out_dir)


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings count once), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def _read_texts(path: Path, max_texts: int | None) -> Iterator[str]:
    if not path.is_file():
        raise AlignkitError(f"texts file {path} does not exist")
    if path.suffix not in (".jsonl", ".txt"):
        raise AlignkitError(
            f"{path}: expected a .jsonl file with a `text` column or a .txt file, one text a line"
        )
    count = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if max_texts is not None and count >= max_texts:
                return
            text = _parse_line(path, number, line) if path.suffix == ".jsonl" else line.rstrip("\r\n")
            if text.strip():
                count += 1
                yield text


def _parse_line(path: Path, number: int, line: str) -> str:
    if not line.strip():
        return ""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise AlignkitError(f"line {number} of {path}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict) or "text" not in row:
        raise AlignkitError(f'line {number} of {path}: no \'text\' column; each line needs {{"text": "..."}}')
    if not isinstance(row["text"], str):
        raise AlignkitError(f"line {number} of {path}: 'text' is {type(row['text']).__name__}, not a string")
    return row["text"]
