"""Load a policy or a frozen reference from a local folder or a hub id, and save models back atomically.

Here live the decisions every recipe shares: which dtype ("auto" never picks bf16 on a CPU), LoRA through
peft, activation checkpointing, remote code only when the config allows it, and a clear `AlignkitError`
instead of a huggingface_hub traceback when a model cannot be found. Saved folders are plain Hugging Face
folders (safetensors) that transformers loads without alignkit or peft. transformers and peft are imported
inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import copy
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alignkit.config import ModelSettings
from alignkit.errors import AlignkitError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto": bfloat16 on a CUDA device that supports it, float32 elsewhere.

    A CPU without bf16 hardware runs bf16 matmuls several times slower than fp32, so "auto" never picks it
    on a CPU; asking for "bfloat16" explicitly still gets it.
    """
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if name not in DTYPES:
        raise AlignkitError(f"model.dtype={name!r} is not a dtype: choose auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def default_device() -> torch.device:
    """cuda:LOCAL_RANK (torchrun sets it; 0 otherwise) when CUDA is available, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def load_tokenizer(settings: ModelSettings) -> PreTrainedTokenizerBase:
    """The model's tokenizer. A tokenizer without a pad token gets pad = eos.

    Reusing EOS as padding is safe only because alignkit builds masks from `attention_mask` and the response
    mask, never from `input_ids == pad_token_id` (that would also mask the real EOS a response ends with).
    """
    from transformers import AutoTokenizer

    source = _resolve_source(settings.path)
    local = Path(source)
    if local.is_dir() and not any(
        (local / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
    ):
        raise AlignkitError(
            f"model folder {local} has no tokenizer (tokenizer.json or tokenizer_config.json): "
            "save the tokenizer next to the model (save_pretrained does) or copy its files into the folder"
        )
    with _readable_errors(settings.path):
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=settings.trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise AlignkitError(
                f"tokenizer of {settings.path} has neither a pad nor an eos token: add an eos_token to its "
                "tokenizer_config.json"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(
    settings: ModelSettings, device: torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model to train and its tokenizer, in train mode, on `device` (default: `default_device()`).

    With `settings.lora` the base weights are frozen and only the adapters train (Hu et al. 2021). With
    `settings.gradient_checkpointing` activations are recomputed in backward (Chen et al. 2016) and the
    KV cache is off.
    """
    device = device or default_device()
    tokenizer = load_tokenizer(settings)
    model = _load_causal_lm(settings, device)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise AlignkitError(
            f"{settings.path}: the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
            f"{model.get_input_embeddings().num_embeddings}: the tokenizer does not belong to this model"
        )
    if model.generation_config.pad_token_id is None:  # generate() pads finished rows with it
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if settings.gradient_checkpointing:
        _enable_checkpointing(model)
    if settings.lora is not None:
        model = _add_lora(model, settings)
    model.train()
    return model, tokenizer


def load_reference(settings: ModelSettings, device: torch.device | None = None) -> PreTrainedModel:
    """A frozen copy to measure KL against: no gradients, eval mode, same dtype rules, never LoRA."""
    model = _load_causal_lm(settings, device or default_device())
    model.requires_grad_(False)
    return model.eval()


def save_pretrained(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | Path,
    merge_lora: bool = True,
) -> Path:
    """Write a Hugging Face folder (safetensors, config, generation config, tokenizer) atomically.

    A peft model is merged into its base on a copy (the model being trained keeps its adapters), so the folder
    loads with plain transformers; `merge_lora=False` writes the adapter folder instead. Everything is written
    to "<out_dir>.tmp-<pid>", fsynced and renamed over `out_dir`; an existing `out_dir` is replaced only once
    the new folder is complete. Call it on one process only (rank 0).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AlignkitError(f"cannot save the model to {out_dir}: it is a file; choose a folder path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier crash of a process with our pid
    try:
        _write_model(unwrap(model), tmp, merge_lora)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _fsync_tree(tmp)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DistributedDataParallel / DataParallel / torch.compile wrappers (peft is kept)."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


def _load_causal_lm(settings: ModelSettings, device: torch.device) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    source = _resolve_source(settings.path)
    dtype = resolve_dtype(settings.dtype, device)
    with _readable_errors(settings.path):
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=settings.trust_remote_code
        )
    return model.to(device)


def _resolve_source(path: str) -> str:
    """A local folder holding config.json, or a hub id that can be fetched (online, or cached offline)."""
    local = Path(path).expanduser()
    if local.is_dir():
        if (local / "config.json").is_file():
            return str(local)
        if (local / "adapter_config.json").is_file():
            raise AlignkitError(
                f"model folder {local} holds a LoRA adapter, not a model (adapter_config.json, no "
                "config.json): point model.path at a merged folder (save with merge_lora=True) or at the "
                "base model"
            )
        raise AlignkitError(
            f"model folder {local} has no config.json, so it is not a Hugging Face model folder: point "
            "model.path at the folder holding config.json and model.safetensors (e.g. runs/NAME/final)"
        )
    if local.exists():
        raise AlignkitError(f"model path {local} is a file: point model.path at the folder that holds it")
    if _hub_offline() and not _in_hub_cache(path):
        raise AlignkitError(
            f"model path {path} is not a local folder and the hub is offline (HF_HUB_OFFLINE=1): "
            "build one with `alignkit tiny-model` or copy the model folder here"
        )
    return path


def _hub_offline() -> bool:
    """Offline per the environment now, or per huggingface_hub (which reads it once, at import)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(
        flag and flag.upper() in ("1", "ON", "YES", "TRUE") for flag in flags
    )


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id (e.g. a missing local path): certainly not cached
        return False


@contextmanager
def _readable_errors(path: str):
    """Turn transformers / huggingface_hub load failures into one-line AlignkitErrors."""
    try:
        yield
    except (
        OSError
    ) as err:  # transformers reports missing files, unknown repos and network failures as OSError
        raise AlignkitError(f"could not load model {path}: {_first_line(err)}") from None
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise AlignkitError(
            f"model {path} ships its own code: set model.trust_remote_code=true only if you trust its authors"
        ) from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _enable_checkpointing(model: PreTrainedModel) -> None:
    model.config.use_cache = False  # a KV cache is useless when every forward is recomputed
    # transformers 5 renamed gradient_checkpointing_enable to activation_checkpointing_enable (the old
    # name warns). Non-reentrant is torch's recommended mode; reentrant drops grads of frozen inputs.
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})


def _add_lora(model: PreTrainedModel, settings: ModelSettings, task_type: str = "CAUSAL_LM") -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = settings.lora
    if settings.gradient_checkpointing:
        # peft's requirement: with frozen embeddings, checkpointed blocks need an input that requires grad.
        model.enable_input_require_grads()
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,  # SEQ_CLS also trains the new score head (peft modules_to_save)
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise AlignkitError(
            f"model.lora.target_modules={lora.target_modules!r} does not fit {settings.path} "
            f"({_first_line(err)}); its linear layers are: {', '.join(linear)} (or use all-linear)"
        ) from None


def _write_model(model: torch.nn.Module, folder: Path, merge_lora: bool) -> None:
    if _is_peft(model) and merge_lora:
        merged = copy.deepcopy(model).merge_and_unload()  # W + (alpha/r) B A, on a copy
        merged.config.use_cache = True
        merged.save_pretrained(folder)
    elif _is_peft(model):
        model.save_pretrained(folder, safe_serialization=True)
    else:
        with _cache_enabled(model.config):
            model.save_pretrained(folder)  # transformers 5 always writes safetensors


def _is_peft(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # without peft installed no model can be a peft model
        return False
    return isinstance(model, PeftModel)


@contextmanager
def _cache_enabled(config):
    """Save `use_cache=True` (turned off for checkpointed training) so the saved model generates fast."""
    was = config.use_cache
    config.use_cache = True
    try:
        yield
    finally:
        config.use_cache = was


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders that hold them
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`. An old `out_dir` is moved aside first and deleted only after the rename."""
    if out_dir.exists():
        old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out_dir)
    _fsync(out_dir.parent)
