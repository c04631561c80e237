"""Typed configuration: one YAML file (``params.yaml`` or a recipe) loaded into pydantic models.

Every knob has a default that works on a 2-core laptop; paper-scale settings live in ``recipes/``.
Unknown keys and bad values are errors that name the key, the value and the file. The one
``Config`` object flows to every step; no step reads environment variables for these settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vlthinker.backends.base import BackendConfig
from vlthinker.errors import ConfigError
from vlthinker.teacher.offline import OfflineTeacherConfig
from vlthinker.validation.config import ValidationConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class DataConfig(_Section):
    """Synthetic sources: how many items, which task families, how big the images are."""

    tasks: list[str] = Field(
        default_factory=lambda: ["count", "bar_chart", "grid_geometry", "table", "spatial", "clock"],
        min_length=1,
    )
    n_train: int = Field(default=600, ge=1)
    n_heldout: int = Field(default=300, ge=1)
    image_size: int = Field(default=112, ge=56, le=1024)
    max_difficulty: int = Field(default=3, ge=1, le=3)
    seed: int = 0


class TinyModelConfig(_Section):
    """Architecture of the offline tiny Qwen2.5-VL model (DESIGN §5)."""

    hidden_size: int = Field(default=192, ge=16)
    num_hidden_layers: int = Field(default=4, ge=1)
    num_attention_heads: int = Field(default=4, ge=1)
    num_key_value_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=512, ge=16)
    vision_hidden_size: int = Field(default=96, ge=16)
    vision_depth: int = Field(default=2, ge=1)
    vision_heads: int = Field(default=4, ge=1)
    vision_intermediate_size: int = Field(default=256, ge=16)
    vision_initializer_range: float = Field(default=0.1, gt=0)
    vocab_size: int = Field(default=1024, ge=300, le=65536)
    max_position_embeddings: int = Field(default=2048, ge=128)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim % 8:
            raise ValueError(
                f"head_dim (hidden_size / num_attention_heads = {head_dim}) must be a multiple of 8"
            )
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be divisible by vision_heads")
        return self


class ModelConfig(_Section):
    """Which base model the loop starts from.

    ``base: tiny`` builds (and caches) the offline tiny VLM and pretrains it; any other value is a
    local directory or a Hugging Face hub id (e.g. ``Qwen/Qwen2.5-VL-7B-Instruct``) loaded as is.
    """

    base: str = "tiny"
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)
    trust_remote_code: bool = False
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    min_pixels: int | None = Field(default=None, ge=1)
    max_pixels: int | None = Field(default=None, ge=1)
    seed: int = 0


class PretrainConfig(_Section):
    """Base pretraining of the tiny model: image → exact caption, direct boxed answers, image and text
    reasoning, arithmetic drills. A default step is 18 rows: 9 / 3 / 2 / 2 / 2 (answers, image
    reasoning, text reasoning, arithmetic, captions)."""

    steps: int = Field(default=6400, ge=1)
    batch_size: int = Field(default=18, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    answer_fraction: float = Field(
        default=9 / 18, ge=0, le=1, description="share of each step's examples that are direct answers"
    )
    answer_max_difficulty: int = Field(
        default=1, ge=1, description="difficulty of the 'easy' direct-answer questions (1 = read one thing)"
    )
    answer_easy_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of the direct answers drawn from easy questions (difficulty <= answer_max_difficulty); "
        "the rest from every difficulty",
    )
    answer_items: int | None = Field(
        default=None,
        ge=1,
        description="distinct synthetic items the direct answers are drawn from (null: twice n_train)",
    )
    image_reasoning_fraction: float = Field(
        default=3 / 18,
        ge=0,
        le=1,
        description="share of image-reasoning examples (the direct-answer items asked for step-by-step "
        "reasoning from the image alone -> the teacher's focused solution): the instruct VLM's ability "
        "to reason about what it sees",
    )
    reasoning_fraction: float = Field(
        default=2 / 18,
        ge=0,
        le=1,
        description="share of text-reasoning examples (exact caption + question in the prompt -> a correct "
        "step-by-step solution): the language skills (reading, copying, arithmetic) an instruct VLM has",
    )
    arithmetic_fraction: float = Field(
        default=2 / 18,
        ge=0,
        le=1,
        description="share of arithmetic drills (a few sums, differences and products in the chains' "
        "notation -> each restated with its value, vlthinker.model.arithmetic): the arithmetic an instruct "
        "VLM brings and the tiny base lacks",
    )
    arithmetic_drills: int = Field(default=4000, ge=1, description="distinct arithmetic drills")
    restate_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of restatement examples (a direct-answer item's question -> 'The question asks "
        "...', the first sentence of the teacher's chain): copying words from the prompt, which chains "
        "need and the base did not learn from the reasoning examples alone",
    )
    restate_warmup_steps: int = Field(
        default=0,
        ge=0,
        description="optimizer steps of restatement examples only (batch_size rows, constant learning_rate) "
        "before the mix: the model learns to copy words from its prompt, which it does not learn inside the mix "
        "(measured: copying learned, captions better, held-out accuracy unchanged)",
    )
    restate_warmup_arithmetic: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of the restatement warm-up's rows that are arithmetic drills (the mix's own "
        "drills): at 0.5 the base copied 44-50 of 117 held-out questions' colours instead of 100 (README)",
    )
    vision_lr_scale: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="learning rate of the vision tower and projector relative to learning_rate (0 = frozen): "
        "trained at the language model's rate they change under it faster than it learns to read them",
    )
    center_projector: bool = Field(
        default=True,
        description="before training, subtract the projector's mean output over pretraining images from its "
        "bias, so image tokens differ in more than one shared direction (a data-dependent init)",
    )
    batching: Literal["by_kind", "mixed"] = Field(
        default="by_kind",
        description="by_kind: each optimizer step accumulates one micro-batch per kind of example (answer, "
        "caption, text reasoning) in the kinds' shares, so a short example is not padded to a long one; "
        "mixed: plain random batches",
    )
    n_train: int = Field(
        default=2000, ge=1, description="synthetic items for the caption and text-reasoning examples"
    )
    n_heldout: int = Field(default=600, ge=1, description="held-out items the base is scored on")
    max_new_tokens: int = Field(default=12, ge=1)
    eval_batch_size: int = Field(default=32, ge=1)
    log_every: int = Field(default=50, ge=1)
    seed: int = 0
    use_prebuilt: bool = Field(
        default=True,
        description="take the base shipped with vlthinker (vlthinker/model/prebuilt/<cache key>) when this "
        "recipe is exactly the one it was built with; false: always pretrain here. Not part of the cache key",
    )

    @property
    def item_fraction(self) -> float:
        """Share of each step's rows made from the caption/reasoning items: what the two kinds made
        from the direct-answer items (answers, image reasoning) and the arithmetic drills leave."""
        return (
            1.0
            - self.answer_fraction
            - self.image_reasoning_fraction
            - self.arithmetic_fraction
            - self.restate_fraction
        )

    def kind_shares(self) -> dict[str, float]:
        """Each kind of example's share of a step's rows."""
        return {
            "answer": self.answer_fraction,
            "image_reasoning": self.image_reasoning_fraction,
            "reasoning": self.reasoning_fraction,
            "arithmetic": self.arithmetic_fraction,
            "restate": self.restate_fraction,
            "caption": self.item_fraction - self.reasoning_fraction,
        }

    @model_validator(mode="after")
    def _fractions(self) -> PretrainConfig:
        if self.item_fraction - self.reasoning_fraction < -1e-9:
            raise ValueError(
                f"answer_fraction ({self.answer_fraction}) + image_reasoning_fraction "
                f"({self.image_reasoning_fraction}) + reasoning_fraction ({self.reasoning_fraction}) + "
                f"arithmetic_fraction ({self.arithmetic_fraction}) + restate_fraction ({self.restate_fraction}) "
                "must not exceed 1 (the rest are caption "
                "examples)"
            )
        if self.image_reasoning_fraction > 0 and self.answer_fraction == 0:
            raise ValueError(
                "image_reasoning_fraction > 0 needs answer_fraction > 0: the image-reasoning examples are "
                "the direct-answer items asked for reasoning"
            )
        if (self.restate_fraction > 0 or self.restate_warmup_steps > 0) and self.answer_fraction == 0:
            raise ValueError(
                "restate_fraction > 0 or restate_warmup_steps > 0 needs answer_fraction > 0: the "
                "restatement examples are the direct-answer items' questions"
            )
        return self


class SamplingConfig(_Section):
    """Decoding settings of one generation job (temperature 0 = greedy)."""

    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    max_new_tokens: int = Field(default=256, ge=1)
    seed: int | None = None

    def params(self, n: int = 1):
        from vlthinker.backends.base import SamplingParams

        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            n=n,
            seed=self.seed,
        )


DEFAULT_REFLECTION_MARKERS = ["Wait,", "But wait,", "But the question"]


class TraceFilterConfig(_Section):
    """How raw chains become SFT traces: reflection truncation, word cap, which verified trace to keep."""

    reflection_markers: list[str] = Field(default_factory=lambda: list(DEFAULT_REFLECTION_MARKERS))
    truncate_reflections: bool = True
    require_answer_after_truncation: bool = Field(
        default=True, description="drop a truncated trace whose remaining reasoning never states the answer"
    )
    max_words: int = Field(
        default=120,
        ge=1,
        description="drop traces with longer reasoning; 120 fits the tiny model's 256-token budget (paper: 500)",
    )
    keep: Literal["shortest", "first"] = "shortest"


class CaptionConfig(_Section):
    """Captioning of records without an exact caption. ``backend: null`` = the base model via hf."""

    backend: BackendConfig | None = None
    prompt: str = (
        "Describe this image in detail so that someone who cannot see it could answer questions about it: "
        "list every object with its colour, shape, size and position, every number, label and text, and "
        "the values shown in any chart, table or diagram."
    )
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.0, max_new_tokens=256)
    )
    batch_size: int = Field(default=16, ge=1)


class DistillConfig(_Section):
    """Iteration 1: a text-only reasoning teacher reads caption + question and writes k chains.

    ``teacher: offline`` is the scripted offline teacher for the synthetic sources (tests, laptop);
    ``teacher: backend`` uses ``backend`` (an OpenAI-compatible R1 endpoint, vllm, or hf).
    """

    teacher: Literal["offline", "backend"] = "offline"
    offline: OfflineTeacherConfig = Field(default_factory=OfflineTeacherConfig)
    backend: BackendConfig | None = None
    k: int = Field(default=4, ge=1)
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=4096)
    )
    filters: TraceFilterConfig = Field(default_factory=TraceFilterConfig)
    batch_size: int = Field(default=32, ge=1)
    max_failed_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="stop when more than this share of items got a failed request or only garbage "
        "(no chain with a final answer) from the teacher, instead of writing a tiny dataset",
    )

    @model_validator(mode="after")
    def _backend_when_needed(self) -> DistillConfig:
        if self.teacher == "backend" and self.backend is None:
            raise ValueError("teacher is 'backend' but no backend is configured")
        return self


class SelfGenerateConfig(_Section):
    """Iteration >= 2: the previous iteration's RL model answers from the image; verified traces kept."""

    model_from: Literal["previous_rl", "champion"] = "previous_rl"
    backend_kind: Literal["hf", "vllm"] = "hf"
    k: int = Field(default=4, ge=1)
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.7, max_new_tokens=256)
    )
    filters: TraceFilterConfig = Field(default_factory=TraceFilterConfig)
    batch_size: int = Field(default=16, ge=1)


class LaunchConfig(_Section):
    """How a training step runs: in this process, or under ``accelerate launch`` with several processes.

    ``num_processes > 1`` re-invokes the step through ``accelerate launch`` with ``accelerate_config``
    (e.g. ``recipes/accelerate/multi_gpu.yaml`` or ``recipes/accelerate/deepspeed_zero3.yaml``).
    """

    num_processes: int = Field(default=1, ge=1)
    accelerate_config: str | None = Field(
        default=None, description="accelerate config file (relative paths are read from the working dir)"
    )
    main_process_port: int | None = Field(default=None, ge=1, le=65535)


class LoraConfig(_Section):
    """LoRA adapters (peft) for ``finetune: lora``; merged into the weights when the step ends."""

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainCommonConfig(_Section):
    """Optimisation, freezing, checkpointing and launch settings shared by the SFT and RL steps."""

    finetune: Literal["full", "lora"] = "full"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze_vision_tower: bool = True
    freeze_projector: bool = True
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; None = run `epochs`")
    epochs: float = Field(default=1.0, gt=0)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    gradient_checkpointing: bool = Field(default=False, description="trade compute for memory (GPU recipes)")
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int = Field(default=50, ge=1, description="checkpoint every N optimizer steps")
    save_total_limit: int = Field(default=2, ge=1)
    keep_checkpoints: bool = Field(default=False, description="keep the checkpoint dir after success")
    seed: int = 0
    launch: LaunchConfig = Field(default_factory=LaunchConfig)


class SFTConfig(TrainCommonConfig):
    """Supervised fine-tuning on an SFT dataset (TRL SFTTrainer), completion-only loss.

    ``init_from``: each iteration starts from the base model (paper) or from the previous model.
    """

    init_from: Literal["base", "previous"] = "base"
    learning_rate: float = Field(
        default=1e-5,
        gt=0,
        le=1,
        description="from the shipped 6400-step base: 1e-5 kept 55.0% held out, 1e-4 51.7%, 1e-3 48.0% (README)",
    )
    batch_size: int = Field(default=16, ge=1, description="examples per device and micro-step")
    max_length: int | None = Field(default=None, ge=16, description="truncate examples (tokens); None = off")
    max_steps: int | None = Field(default=150, ge=1, description="optimizer steps; None = run `epochs`")


class SelectConfig(_Section):
    """RL data selection: each candidate's pass rate under the SFT model from k samples, then a band.

    An item is kept when ``min_pass_rate < p < max_pass_rate`` (default 0 < p < 1: items the model
    sometimes solves, the only ones that give GRPO a learning signal). ``curriculum: medium_then_hard``
    (the paper's later recipe) orders the kept items medium first (p >= ``hard_below``), then hard;
    ``none`` shuffles them. Pass rates are graded like the RL accuracy reward (strict format).
    ``max_candidates`` bounds how many input items are sampled at all (k generations each).
    """

    k: int = Field(default=4, ge=1)
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.7, max_new_tokens=256)
    )
    min_pass_rate: float = Field(default=0.0, ge=0, le=1)
    max_pass_rate: float = Field(default=1.0, ge=0, le=1)
    curriculum: Literal["none", "medium_then_hard"] = "none"
    hard_below: float = Field(default=0.5, gt=0, lt=1, description="curriculum: p below this is hard")
    max_candidates: int | None = Field(
        default=300,
        ge=1,
        description="measure pass rates on at most this many input items, a seeded random sample "
        "(None = all); GRPO uses rl.max_steps x rl.prompts_per_step prompts, so a laptop run need not "
        "sample every item k times",
    )
    max_items: int | None = Field(default=None, ge=1, description="cap on kept items (None = all)")
    backend_kind: Literal["hf", "vllm"] = "hf"
    batch_size: int = Field(default=32, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _band_ordered(self) -> SelectConfig:
        if self.min_pass_rate >= self.max_pass_rate:
            raise ValueError(
                f"min_pass_rate ({self.min_pass_rate}) must be below max_pass_rate ({self.max_pass_rate})"
            )
        return self


class RLConfig(TrainCommonConfig):
    """GRPO (TRL GRPOTrainer) on an RL dataset; rewards come from ``vlthinker.answers``.

    One optimizer step sees ``prompts_per_step`` prompts x ``num_generations`` completions. The accuracy
    reward requires the strict format; ``format_weight > 0`` adds the format reward beside it.
    ``max_prompt_length`` drops (and counts) items whose prompt, image tokens included, is longer.
    """

    learning_rate: float = Field(
        default=2e-5,
        gt=0,
        le=1,
        description="on the shipped base's SFT model: 5e-5 cost 3 points held out, 2e-5 kept them and raised "
        "the reward on its items by 0.05, 1e-5 by 0.02 (README)",
    )
    max_steps: int | None = Field(default=30, ge=1, description="optimizer steps; None = run `epochs`")
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "constant"
    logging_steps: int = Field(default=5, ge=1)
    save_steps: int = Field(default=20, ge=1, description="checkpoint every N optimizer steps")
    prompts_per_step: int = Field(default=4, ge=1)
    num_generations: int = Field(default=8, ge=2)
    temperature: float = Field(default=0.7, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_prompt_length: int | None = Field(default=None, ge=1)
    max_completion_length: int = Field(default=256, ge=1)
    beta: float = Field(default=0.01, ge=0, description="KL coefficient (0 = no reference model)")
    epsilon: float = Field(default=0.2, gt=0)
    num_iterations: int = Field(default=1, ge=1)
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    accuracy_weight: float = Field(default=1.0, ge=0)
    format_weight: float = Field(default=0.0, ge=0)
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)
    vllm_tensor_parallel_size: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _rewards_and_batch(self) -> RLConfig:
        if self.accuracy_weight == 0 and self.format_weight == 0:
            raise ValueError("at least one of accuracy_weight, format_weight must be > 0")
        completions = self.prompts_per_step * self.num_generations
        shards = self.launch.num_processes * self.gradient_accumulation_steps
        if completions % shards:
            raise ValueError(
                f"prompts_per_step x num_generations ({completions}) must divide evenly over "
                f"launch.num_processes x gradient_accumulation_steps ({shards})"
            )
        return self


class GPUConfig(_Section):
    """GPU requests of the training/evaluation steps on a cluster (ignored by kfp.local)."""

    count: int = Field(default=1, ge=0, description="0 runs those steps on CPU nodes")
    accelerator: str = Field(default="nvidia.com/gpu", min_length=1)
    shm_size: str = Field(default="16Gi", pattern=r"^[0-9]+(Mi|Gi)$", description="memory-backed /dev/shm")
    memory: str = Field(default="64Gi", pattern=r"^[0-9]+(Mi|Gi)$")
    cpu: str = Field(default="8", pattern=r"^[0-9]+m?$")


class PipelineSecrets(_Section):
    """Kubernetes Secrets (by name) mounted as environment variables; values never enter the YAML."""

    mlflow: str | None = Field(default="vlthinker-mlflow-client", description="keys username, password")
    s3: str | None = Field(default="vlthinker-s3", description="keys access-key-id, secret-access-key")
    teacher: str | None = Field(default=None, description="key api-key, exposed as the teacher's api_key_env")


class PipelineConfig(_Section):
    """The Kubeflow pipeline: iterations, images, cluster resources."""

    iterations: int = Field(default=2, ge=1, le=20)
    name: str = Field(default="vlthinker", pattern=r"^[a-z0-9][a-z0-9-]*$")
    cpu_image: str = Field(default="ghcr.io/vlthinker/vlthinker-cpu:0.1.0", min_length=1)
    gpu_image: str = Field(default="ghcr.io/vlthinker/vlthinker-gpu:0.1.0", min_length=1)
    gpu: GPUConfig = Field(default_factory=GPUConfig)
    secrets: PipelineSecrets = Field(default_factory=PipelineSecrets)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)
    tracking_uri: str | None = Field(
        default=None, description="cluster MLflow URI (local runs use --state-dir)"
    )
    dvc_remote: str | None = Field(default=None, description="cluster DVC remote, e.g. s3://bucket/dvc")


class EvaluationConfig(_Section):
    """Evaluation of candidates and the base: greedy decoding (DESIGN §6) on the listed benchmarks.

    ``heldout`` is the built-in synthetic held-out set; ``mathvista``, ``mathverse`` and ``mathvision``
    are imported with ``vlthinker data import`` and passed to ``step evaluate --benchmark NAME=DIR``.
    """

    benchmarks: list[Literal["heldout", "mathvista", "mathverse", "mathvision"]] = Field(
        default_factory=lambda: ["heldout"], min_length=1
    )
    max_new_tokens: int = Field(default=256, ge=1, description="paper: 2048")
    batch_size: int = Field(default=16, ge=1)
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy (the paper: 0.01 with top_k 1)")
    limit: int | None = Field(default=None, ge=1, description="at most this many items per benchmark")

    def sampling(self):
        from vlthinker.backends.base import SamplingParams

        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature)


class RegistryConfig(_Section):
    """The MLflow registered model and its promotion gate (paired test on identical items)."""

    model_name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+$", description="default: the project name"
    )
    margin: float = Field(
        default=0.0, ge=-1, le=1, description="promote only if the accuracy gain exceeds it"
    )
    alpha: float = Field(default=0.05, gt=0, lt=1)
    test: Literal["mcnemar", "bootstrap"] = "mcnemar"
    bootstrap_samples: int = Field(default=10_000, ge=100)
    seed: int = 0
    gate_benchmarks: list[str] = Field(default_factory=lambda: ["heldout"], min_length=1)
    lock_timeout_s: float = Field(default=120.0, gt=0, description="lease of the gate lock")
    lock_wait_s: float = Field(default=600.0, ge=0, description="how long a gate waits for the lock")
    register_sft: bool = Field(
        default=False, description="also register (not gate) each iteration's SFT model"
    )
    retries: int = Field(default=5, ge=1, description="attempts per MLflow call before giving up")
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    request_timeout_s: int = Field(default=30, ge=1)


class Config(_Section):
    """The whole configuration of a vlthinker run."""

    project: str = Field(default="vlthinker", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    self_generate: SelfGenerateConfig = Field(default_factory=SelfGenerateConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    def content_hash(self, *sections: str) -> str:
        """Stable hash of the whole config, or of the named sections only (for caching)."""
        payload = self.model_dump(mode="json")
        if sections:
            payload = {name: payload[name] for name in sections}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def registered_model_name(self) -> str:
        """The registered model of this project (``registry.model_name``, else the project name)."""
        return self.registry.model_name or self.project


def _format_validation_error(exc: ValidationError, source: str, raw: dict[str, Any]) -> str:
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            lines.append(f"  - unknown key {key!r} (value {value!r})")
        elif error["type"] == "missing":
            lines.append(f"  - missing key {key!r}")
        else:
            lines.append(f"  - key {key!r}: {error['msg']} (value {value!r})")
    return "\n".join(lines)


def config_from_dict(raw: dict[str, Any] | None, source: str = "<dict>") -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source, raw)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config; ``None`` gives the defaults. ``overrides`` use dotted keys (``pretrain.steps``)."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{source}: config file not found")
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if overrides:
        raw = _apply_overrides(raw, overrides, source)
    return config_from_dict(raw, source)


def _apply_overrides(raw: Any, overrides: dict[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    merged = json.loads(json.dumps(raw))
    for dotted, value in overrides.items():
        node = merged
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override {dotted!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key.path=value`` where value is YAML (``3``, ``true``, ``[a, b]``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. pretrain.steps=100")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from None
