"""Run configuration: one pydantic model per recipe, loaded from YAML plus dotted command-line overrides.

Every key is real: an unknown or misspelled key is an error that names it and suggests the closest valid
key. Defaults suit the machine (float32 on a CPU without fast bf16). Imports only pydantic and PyYAML.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignkit.errors import AlignkitError


class Section(BaseModel):
    """A config block: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class LoraSettings(Section):
    """Low-rank adapters through peft (Hu et al. 2021). Only the adapter weights train."""

    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class ModelSettings(Section):
    path: str = Field(description="a local model folder (e.g. from `alignkit tiny-model`) or a hub id")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on GPUs that support it, float32 elsewhere (CPU bf16 is slow)"
    )
    trust_remote_code: bool = Field(False, description="run model code shipped with a hub model; off for safety")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    lora: LoraSettings | None = None


class DataSettings(Section):
    train: str = Field(description="JSONL, Parquet, CSV, a saved `datasets` folder, or a hub id")
    eval: str | None = Field(None, description="held-out rows; if absent, eval_fraction of train is held out")
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    max_length: int = Field(512, ge=8, description="tokens per sequence (prompt + response)")
    truncation: Literal["error", "left", "drop"] = Field(
        "error", description="rows over max_length: error out, cut the prompt from the left, or drop them"
    )
    group_by_length: bool = Field(
        False, description="batch rows of similar length together: less padding, faster steps "
        "(train/batches.py)")

    @model_validator(mode="after")
    def _one_eval_source(self) -> DataSettings:
        if self.eval is not None and self.eval_fraction > 0:
            raise ValueError("set data.eval or data.eval_fraction, not both")
        return self


class SFTDataSettings(DataSettings):
    packing: bool = Field(
        True, description="put a micro-batch's rows in one row with a block mask instead of padding them")


class TextDataSettings(Section):
    train: str = Field(description="rows with a `text` column")
    eval: str | None = None
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    max_length: int = Field(512, ge=8, description="block size: texts are joined with EOS and cut into blocks")


class TrainSettings(Section):
    lr: float = Field(1e-4, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="the schedule decays to lr * min_lr_ratio")
    weight_decay: float = Field(0.0, ge=0.0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    batch_size: int = Field(8, ge=1, description="rows per micro-batch on each process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    epochs: float = Field(1.0, gt=0, description="passes over the data; ignored when max_steps is set")
    max_steps: int | None = Field(None, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm; null: no clipping")
    max_bad_steps: int = Field(3, ge=1, description="stop after this many non-finite losses in a row")
    log_every: int = Field(1, ge=1)
    eval_every: int = Field(0, ge=0, description="steps between evaluations; 0: only at the end")
    save_every: int = Field(0, ge=0, description="steps between checkpoints; 0: only at the end")
    keep_last: int = Field(2, ge=1, description="checkpoints to keep")
    resume: bool = Field(False, description="continue from the newest checkpoint in the run folder")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's choice")
    trackers: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)


class RunConfig(Section):
    recipe: str | None = Field(None, description="the command this file is for; `alignkit validate` reads it")
    name: str = Field(description="run folder name under output_dir")
    output_dir: str = "runs"
    seed: int = 0
    model: ModelSettings
    train: TrainSettings = Field(default_factory=TrainSettings)


class PretrainConfig(RunConfig):
    data: TextDataSettings


class SFTConfig(RunConfig):
    data: SFTDataSettings


class RewardSettings(Section):
    margin_column: str | None = Field(
        None, description="a numeric column subtracted inside the Bradley-Terry loss (Llama 2's margin); an "
        "eval file without the column is scored without it")
    center_coef: float = Field(
        0.0, ge=0.0, description="weight of (r_chosen + r_rejected)^2, keeping rewards centred at 0")
    stats_rows: int = Field(1000, ge=1, description="pairs scored after training for the saved mean and std")
    lm_coef: float = Field(0.0, ge=0.0, description="weight of the chosen responses' language-modelling loss "
                           "through the model's own output layer: keeps what it knew (GRM, Yang et al. 2024)")


class RewardConfig(RunConfig):
    data: DataSettings
    reward: RewardSettings = Field(default_factory=RewardSettings)


class PRMSettings(Section):
    step_separator: str = Field(
        "\n", min_length=1, description="joins a row's steps into one reply; scoring splits completions at it")


class PRMConfig(RunConfig):
    data: DataSettings
    prm: PRMSettings = Field(default_factory=PRMSettings)


PREFERENCE_LOSSES = ("sigmoid", "ipo", "conservative", "robust", "hinge", "simpo", "orpo")
REFERENCE_FREE = ("simpo", "orpo")
# Options that only some losses read; setting one for another loss is an error, not a silent no-op.
LOSS_OPTIONS = {"label_smoothing": ("conservative", "robust"), "gamma": ("simpo",)}


class DPOSettings(Section):
    loss: Literal[PREFERENCE_LOSSES] = Field("sigmoid", description="which preference loss (losses/preference.py)")
    beta: float = Field(0.1, gt=0, description="strength of the KL constraint (ORPO: the odds-ratio weight)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="assumed label-flip rate (conservative, robust)")
    gamma: float = Field(0.0, ge=0.0, description="SimPO's target reward margin")
    nll_weight: float = Field(0.0, ge=0.0, description="add this times the chosen response's per-token NLL (RPO)")
    reference: Literal["model", "adapter", "cached", "none"] | None = Field(
        None, description="model: a frozen copy; adapter: the policy with LoRA off; cached: log-probs computed "
        "once before training; none: for reference-free losses. Default: model, or none for simpo/orpo")
    reference_path: str | None = Field(None, description="the reference model folder; default: model.path")
    reference_cache: str | None = Field(None, description="reuse reference log-probs saved by an earlier run")
    layout: Literal["packed", "shared_prompt", "separate"] = Field(
        "packed", description="packed: every pair in one row, no padding; shared_prompt: a row per pair; "
        "both compute the prompt once. separate: two rows per pair (needed for sliding-window models)")

    @model_validator(mode="after")
    def _consistent(self) -> DPOSettings:
        for option, losses in LOSS_OPTIONS.items():
            if getattr(self, option) and self.loss not in losses:
                raise ValueError(f"{option} is read only by loss {' / '.join(losses)}, not {self.loss}")
        free = self.loss in REFERENCE_FREE
        if self.reference is None:
            self.__dict__["reference"] = "none" if free else "model"
        if free and self.reference != "none":
            raise ValueError(f"loss {self.loss} uses no reference model: drop reference={self.reference}")
        if not free and self.reference == "none":
            raise ValueError(f"loss {self.loss} needs a reference: set reference to model, adapter or cached")
        if self.reference_cache and self.reference != "cached":
            raise ValueError("reference_cache is read only with reference=cached")
        if self.loss == "orpo" and self.nll_weight:
            raise ValueError("orpo already includes the chosen NLL; leave nll_weight at 0")
        return self


class DPOConfig(RunConfig):
    data: DataSettings
    dpo: DPOSettings = Field(default_factory=DPOSettings)

    @model_validator(mode="after")
    def _adapter_needs_lora(self) -> DPOConfig:
        if self.dpo.reference == "adapter" and self.model.lora is None:
            raise ValueError("dpo.reference=adapter needs model.lora: the reference is the policy with its "
                             "adapter switched off")
        return self


class KTOSettings(Section):
    beta: float = Field(0.1, gt=0, description="scale of the implicit reward inside the value function")
    desirable_weight: float = Field(1.0, gt=0, description="lambda_D: weight of desirable completions")
    undesirable_weight: float = Field(1.0, gt=0, description="lambda_U: weight of undesirable completions")
    reference: Literal["model", "adapter"] = Field("model", description="a frozen copy, or the policy with LoRA off")
    reference_path: str | None = Field(None, description="the reference model folder; default: model.path")


class KTOConfig(RunConfig):
    data: DataSettings
    kto: KTOSettings = Field(default_factory=KTOSettings)

    @model_validator(mode="after")
    def _checks(self) -> KTOConfig:
        if self.kto.reference == "adapter" and self.model.lora is None:
            raise ValueError("kto.reference=adapter needs model.lora")
        if self.train.batch_size < 2:
            raise ValueError("KTO estimates its KL reference point from other rows of the batch: "
                             "train.batch_size must be at least 2")
        return self


class PromptDataSettings(Section):
    train: str = Field(description="prompt rows: a `prompt` column; every other column reaches the reward functions")
    eval: str | None = Field(None, description="held-out prompts, answered greedily and scored at each evaluation")
    max_prompt_length: int = Field(256, ge=1, description="tokens per prompt, chat template included")
    truncation: Literal["error", "left", "drop"] = Field(
        "error", description="prompts over max_prompt_length: error out, cut from the left, or drop them")


class RolloutSettings(Section):
    """How the policy samples its training responses. No top-k / top-p: the ratio pi / pi_old that PPO takes
    must be over the distribution that was actually sampled, which is the policy's at `temperature`."""

    max_new_tokens: int = Field(64, ge=1, description="response length limit; longer responses are cut")
    temperature: float = Field(1.0, gt=0, description="sampling temperature; log-probs use the same one")
    stop_strings: list[str] = Field(default_factory=list, description="end a response at any of these")


class RLTrainSettings(TrainSettings):
    """For RL recipes a step is one rollout of batch_size prompts plus the updates on it; epochs and
    max_steps count rollouts. Each minibatch of the rollout is one optimizer step."""

    batch_size: int = Field(8, ge=1, description="prompts per rollout")

    @model_validator(mode="after")
    def _no_accumulation(self) -> RLTrainSettings:
        if self.grad_accum != 1:
            raise ValueError("RL recipes take one optimizer step per minibatch: set the minibatch size "
                             "(ppo.minibatch_size / grpo.minibatch_size) instead of train.grad_accum")
        return self


class PPOSettings(Section):
    reward_model: str = Field(description="a reward model folder (the final/ of `alignkit reward`)")
    value_model: str | None = Field(None, description="the critic's starting point; default: the reward model")
    reference: Literal["model", "adapter"] = Field("model", description="a frozen copy, or the policy with LoRA off")
    reference_path: str | None = Field(None, description="the reference model folder; default: model.path")
    kl_coef: float = Field(0.05, ge=0.0, description="beta of the per-token KL penalty in the reward")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="the per-token KL estimate (ops/kl.py)")
    kl_target: float | None = Field(None, gt=0, description="adaptive KL (Ziegler et al. 2019): the target KL")
    kl_horizon: float = Field(10_000, gt=0, description="adaptive KL horizon, in samples")
    gamma: float = Field(1.0, ge=0.0, le=1.0, description="GAE discount")
    lam: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")
    epochs: int = Field(4, ge=1, description="passes over each rollout")
    minibatch_size: int = Field(8, ge=1, description="sequences per optimizer step")
    clip: float = Field(0.2, gt=0, description="policy ratio clip epsilon")
    value_clip: float = Field(0.2, gt=0, description="how far a value may move from the rollout's value")
    vf_coef: float = Field(0.1, ge=0.0, description="weight of the value loss in the total loss")
    whiten_advantages: bool = Field(True, description="advantages to mean 0, std 1 over the rollout")
    normalize_reward: bool = Field(True, description="(score - mean) / std with the reward run's reward_stats.json")
    reward_clip: float | None = Field(5.0, gt=0, description="clip normalised scores to [-c, c]; null: no clip")
    missing_eos_penalty: float | None = Field(
        None, ge=0.0, description="subtracted from the score of a response cut at max_new_tokens")
    ptx_coef: float = Field(0.0, ge=0.0, description="PPO-ptx (InstructGPT): weight of a language-modelling loss "
                                                      "on ptx_data added to every PPO step; 0: off")
    ptx_data: str | None = Field(None, description="text rows ({\"text\": ...}) for the ptx term, e.g. the "
                                                    "pretraining file")
    ptx_block: int = Field(128, ge=8, description="tokens per ptx sequence (the texts are packed into blocks)")


class PPOConfig(RunConfig):
    data: PromptDataSettings
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    train: RLTrainSettings = Field(default_factory=RLTrainSettings)
    ppo: PPOSettings

    @model_validator(mode="after")
    def _checks(self) -> PPOConfig:
        if self.ppo.reference == "adapter" and self.model.lora is None:
            raise ValueError("ppo.reference=adapter needs model.lora")
        if self.ppo.ptx_coef > 0 and self.ppo.ptx_data is None:
            raise ValueError("ppo.ptx_coef > 0 needs ppo.ptx_data, a file of text rows (e.g. the pretraining data)")
        return self


class RewardSpec(Section):
    """One term of the reward: a function (a built-in name or "module:function") or a reward model folder."""

    function: str | None = Field(None, description="exact_match, repetition_penalty, or module:function")
    model: str | None = Field(None, description="a reward model folder (scored at the last real token) or a "
                              "process reward model folder (`alignkit prm`; its steps' scores reduced)")
    reduce: Literal["min", "product", "last"] | None = Field(
        None, description="process reward models only: how step scores become one; default min")
    weight: float = 1.0
    fallback: bool = Field(False, description="score only the samples a term without it declined (returned "
                           "None itself, e.g. `verified` on a prompt with no single answer), which are "
                           "otherwise masked out; those samples get the fallback terms' sum alone")

    @model_validator(mode="after")
    def _one_source(self) -> RewardSpec:
        if (self.function is None) == (self.model is None):
            raise ValueError("a reward names exactly one of `function` or `model`")
        if self.reduce is not None and self.model is None:
            raise ValueError("`reduce` is read only for a process reward model (`model:`)")
        return self


GRPO_VARIANTS = ("grpo", "dr_grpo", "dapo", "rloo")


class GRPOSettings(Section):
    rewards: list[RewardSpec] = Field(min_length=1, description="summed with their weights")
    group_size: int = Field(8, ge=2, description="samples per prompt (G)")
    variant: Literal[GRPO_VARIANTS] = Field(
        "grpo", description="grpo: (r - mean) / std in the group, sequence mean; dr_grpo: r - mean, constant "
        "length normaliser; dapo: token mean, clip-higher, dynamic sampling, overlong penalty; rloo: "
        "leave-one-out baseline, token mean")
    epochs: int = Field(1, ge=1, description="passes over each rollout (1: on-policy, the ratio is 1)")
    minibatch_size: int | None = Field(None, ge=1, description="sequences per optimizer step; default: all")
    clip_low: float | None = Field(None, gt=0, description="default 0.2")
    clip_high: float | None = Field(None, gt=0, description="default 0.2, dapo 0.28")
    kl_coef: float = Field(0.0, ge=0.0, description="weight of the k3 KL to the reference in the loss; 0: none")
    reference: Literal["model", "adapter"] = Field("model", description="used only when kl_coef > 0")
    reference_path: str | None = Field(None, description="default: model.path")
    overlong_cache: int | None = Field(
        None, ge=1, description="dapo's soft overlong penalty ramps over the last this many tokens; "
        "default for dapo: max_new_tokens // 4")
    reward_timeout_s: float | None = Field(60.0, gt=0, description="a reward call past this is a failure")

    @model_validator(mode="after")
    def _checks(self) -> GRPOSettings:
        if all(spec.fallback for spec in self.rewards):
            raise ValueError("every reward has fallback: true; a fallback scores what the other rewards "
                             "decline, so at least one reward must be without it")
        if self.overlong_cache is not None and self.variant != "dapo":
            raise ValueError("overlong_cache is read only by variant dapo")
        return self


class GRPOConfig(RunConfig):
    data: PromptDataSettings
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    train: RLTrainSettings = Field(default_factory=RLTrainSettings)
    grpo: GRPOSettings

    @model_validator(mode="after")
    def _checks(self) -> GRPOConfig:
        if self.grpo.kl_coef > 0 and self.grpo.reference == "adapter" and self.model.lora is None:
            raise ValueError("grpo.reference=adapter needs model.lora")
        if self.grpo.overlong_cache is not None and self.grpo.overlong_cache > self.rollout.max_new_tokens:
            raise ValueError("grpo.overlong_cache must be at most rollout.max_new_tokens")
        return self


class CAIModelSettings(Section):
    """The policy whose answers are critiqued and compared; cai samples it and never trains it."""

    path: str = Field(description="a local causal-LM folder with a chat template (e.g. runs/sft/final)")
    batch_size: int = Field(16, ge=1, description="conversations sampled together by each local model")


class CAIDataSettings(Section):
    prompts: str = Field(description="prompt rows, as `alignkit ppo` / `grpo` read them (any other columns "
                                     "are ignored)")
    limit: int | None = Field(None, ge=1, description="the first `limit` prompts only; null: all")
    max_prompt_length: int = Field(256, ge=1, description="tokens per prompt, chat template included")
    truncation: Literal["error", "drop"] = Field(
        "error", description="prompts over max_prompt_length: error out, or leave them out (counted)")


class CAISamplingSettings(Section):
    """How the policy samples its responses (the ones critiqued, and the pairs the judge compares)."""

    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(1.0, ge=0.0, description="0 is greedy; the prefs phase needs > 0")
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class FeedbackModelSettings(Section):
    """A model giving feedback: the policy itself, another local folder, or an OpenAI-compatible endpoint."""

    model: str | None = Field(None, description="null: the policy (model.path); else a local folder, or with "
                                                "`url` the endpoint's model name")
    url: str | None = Field(None, description="an OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)")
    api_key_env: str | None = Field(None, description="the environment variable holding the API key")
    cache: str | None = Field(None, description="a folder of cached answers: a rerun asks nothing twice")
    max_tokens: int = Field(256, ge=1, description="longest answer, in tokens")
    temperature: float = Field(0.0, ge=0.0, description="0 is greedy")
    timeout_s: float = Field(60.0, gt=0, description="endpoint only: seconds per request")
    max_retries: int = Field(4, ge=0, description="endpoint only: retries after a timeout, 429 or 5xx")
    concurrency: int = Field(4, ge=1, description="endpoint only: requests in flight at once")

    @model_validator(mode="after")
    def _endpoint_needs_a_name(self) -> FeedbackModelSettings:
        if self.url is not None and self.model is None:
            raise ValueError("an endpoint (url) needs `model`, the model name it serves")
        if self.api_key_env is not None and self.url is None:
            raise ValueError("api_key_env is for an endpoint: set url too, or drop it")
        return self


class JudgeSettings(FeedbackModelSettings):
    parse_retries: int = Field(2, ge=0, description="asks again after an answer without a `Verdict:` line")
    bare: bool = Field(False, description="ask the pair alone, without system text or the principle (a judge "
                                          "trained on `alignkit convert judge-sft` chats)")


class CAISettings(Section):
    phase: Literal["sft", "prefs", "both"] = Field(
        "both", description="sft: critique -> revise -> sft.jsonl; prefs: AI-labelled pairs -> prefs.jsonl")
    constitution: str | None = Field(None, description="a YAML / JSON file of principles; null: the default")
    rounds: int = Field(1, ge=1, description="sft phase: critique-revise rounds per prompt")
    principles_per_pair: int = Field(1, ge=1, description="prefs phase: principles (judgments) per pair, "
                                                          "majority vote; odd numbers avoid ties")
    resample_tries: int = Field(3, ge=0, description="prefs phase: new pairs sampled for a prompt whose two "
                                                     "responses are identical or empty, before it is skipped")


class CAIConfig(Section):
    """`alignkit cai`: Constitutional AI data (Bai et al. 2022). It samples models and trains none, so it has
    no train section."""

    recipe: str | None = Field(None, description="the command this file is for; `alignkit validate` reads it")
    name: str = Field(description="run folder name under output_dir")
    output_dir: str = "runs"
    seed: int = Field(0, description="principle draws and sampling seeds")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's choice")
    model: CAIModelSettings
    data: CAIDataSettings
    sampling: CAISamplingSettings = Field(default_factory=CAISamplingSettings)
    critic: FeedbackModelSettings = Field(default_factory=FeedbackModelSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    cai: CAISettings = Field(default_factory=CAISettings)

    @model_validator(mode="after")
    def _pairs_need_sampling(self) -> CAIConfig:
        if self.cai.phase != "sft" and self.sampling.temperature == 0:
            raise ValueError(f"cai.phase={self.cai.phase} compares two responses per prompt, which greedy "
                             "sampling makes identical: set sampling.temperature > 0")
        return self


CONFIGS: dict[str, type[RunConfig] | type[CAIConfig]] = {
    "pretrain": PretrainConfig, "sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig, "kto": KTOConfig,
    "ppo": PPOConfig, "grpo": GRPOConfig, "prm": PRMConfig, "cai": CAIConfig,
}


def load_config(recipe: str, path: str | Path | None, overrides: list[str] = (),
                **kwargs: Any) -> RunConfig | CAIConfig:
    """Read YAML (if given), apply `a.b=value` overrides and keyword overrides, and validate."""
    if recipe not in CONFIGS:
        raise AlignkitError(f"unknown recipe {recipe!r}; choose one of: {', '.join(CONFIGS)}")
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        raw.pop("_meta", None)  # a run's own config.yaml (versions, commit) reruns the run
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AlignkitError(f"override {item!r} is not of the form key.sub=value")
        _set_dotted(raw, key, yaml.safe_load(value) if value else None)
    for key, value in kwargs.items():
        _set_dotted(raw, key.replace("__", "."), value)
    written_for = raw.get("recipe")
    if written_for is not None and written_for != recipe:
        raise AlignkitError(f"{path} is a config for `alignkit {written_for}`, not `alignkit {recipe}`")
    raw["recipe"] = recipe
    return validate_config(CONFIGS[recipe], raw, source=str(path) if path else "overrides")


def recipe_of(path: str | Path) -> str:
    """The recipe a config file names in its `recipe:` key."""
    recipe = _read_yaml(Path(path)).get("recipe")
    if recipe not in CONFIGS:
        raise AlignkitError(f"{path}: set `recipe:` to one of {', '.join(CONFIGS)} (got {recipe!r})")
    return recipe


def validate_config(cls: type[Section], raw: dict, source: str) -> Section:
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise AlignkitError(_explain(cls, err, source)) from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise AlignkitError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AlignkitError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise AlignkitError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise AlignkitError(f"override {dotted}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value


def _explain(cls: type[BaseModel], err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config for {cls.__name__}"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _fields_at(cls, e["loc"][:-1])
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {', '.join(valid)}"
            lines.append(f"  {where}: unknown key{hint}")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required, but not set")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the section at `loc`, following nested pydantic models."""
    model: Any = cls
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _section_type(field.annotation)
    return list(getattr(model, "model_fields", {}))


def _section_type(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None

