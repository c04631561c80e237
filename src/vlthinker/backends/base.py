"""The one generation interface every backend implements, its sampling settings and its config.

A prompt is a conversation in the chat format the processors and OpenAI-compatible servers share::

    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]

``content`` is a string or a list of parts: ``{"type": "image"}`` marks where the prompt's image
goes, ``{"type": "text", "text": ...}`` is text. Each prompt comes with at most one PIL image
(``None`` for a text-only prompt); a prompt has exactly one image part if and only if it has an image.

``Backend.generate`` returns ``params.n`` completions per prompt, in prompt order, or raises: a
backend never returns a partial result. ``make_backend`` imports the vllm engine or the HTTP client
only when that kind is chosen, so the core install never needs them.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlthinker.errors import VLThinkerError

if TYPE_CHECKING:
    from vlthinker.model.loader import LoadedModel

Message = dict[str, Any]
Prompt = list[Message]
ProgressFn = Callable[[int, int], None]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BackendError(VLThinkerError):
    """Generation failed (bad request, unreachable endpoint, malformed answer, missing engine)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` is greedy; ``top_k``/``seed`` None and empty ``stop`` are unset.

    ``stop`` strings end a completion; the stop string itself is not part of the returned text.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.stop, str | list):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        problems = [
            msg
            for bad, msg in [
                (self.max_new_tokens < 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
                (self.temperature < 0, f"temperature must be >= 0, got {self.temperature}"),
                (not 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
                (self.top_k is not None and self.top_k < 1, f"top_k must be >= 1 or None, got {self.top_k}"),
                (self.n < 1, f"n must be >= 1, got {self.n}"),
                (any(not s for s in self.stop), "stop strings must be non-empty"),
            ]
            if bad
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and its optional image (a PIL image), as a backend receives it."""

    messages: Prompt
    image: Any | None = None


class BackendConfig(BaseModel):
    """Which backend generates, and its knobs. Fields for other kinds are ignored by a backend.

    ``model``: a local directory or hub id (hf, vllm), or the served model name (openai).
    ``api_key_env`` names the environment variable that holds the key (the key itself never
    appears in a config file); when that variable is unset or empty no ``Authorization`` header is
    sent, which is what a local ``vllm serve`` without ``--api-key`` expects.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    kind: Literal["hf", "vllm", "openai"] = "hf"
    model: str = Field(min_length=1)
    batch_size: int = Field(
        default=16, ge=1, description="prompts per forward pass (hf) or engine call (vllm)"
    )
    trust_remote_code: bool = False
    # hf
    device: str | None = Field(default=None, description="hf: torch device; None = cuda if available")
    min_pixels: int | None = Field(default=None, ge=1)
    max_pixels: int | None = Field(default=None, ge=1)
    # hf and vllm
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # vllm
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=1)
    # openai
    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    max_concurrency: int = Field(default=8, ge=1)
    send_n: bool = Field(
        default=True, description="False: ask for n completions as n requests (servers that ignore n)"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("api_key_env is the NAME of an environment variable (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _kind_needs(self) -> BackendConfig:
        if self.kind == "openai" and not self.base_url:
            raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        return self


class Backend(abc.ABC):
    """Generates completions for (messages, image) prompts. Use as a context manager or call close()."""

    kind: str = "base"

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[Any | None] | None = None,
        params: SamplingParams | None = None,
        progress: ProgressFn | None = None,
    ) -> list[list[str]]:
        """``params.n`` completions per prompt, in prompt order; ``progress(done, total)`` as prompts finish."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release engines, threads or connections the backend holds."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def image_part_count(messages: Prompt) -> int:
    """How many ``{"type": "image"}`` parts a conversation holds."""
    return sum(
        1
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image"
    )


def check_requests(prompts: Sequence[Prompt], images: Sequence[Any | None] | None) -> list[GenerationRequest]:
    """Pair prompts with images, checking the shapes every backend relies on."""
    images = [None] * len(prompts) if images is None else list(images)
    if len(prompts) != len(images):
        raise BackendError(f"{len(prompts)} prompts but {len(images)} images")
    requests = []
    for i, (messages, image) in enumerate(zip(prompts, images, strict=True)):
        _check_messages(i, messages)
        parts = image_part_count(messages)
        if parts != (0 if image is None else 1):
            has = "no image" if image is None else "an image"
            raise BackendError(
                f"prompt {i} has {has} but {parts} image part(s); a prompt with an image needs exactly "
                'one {"type": "image"} part, a text-only prompt none'
            )
        requests.append(GenerationRequest(messages=messages, image=image))
    return requests


def _check_messages(i: int, messages: Prompt) -> None:
    if not isinstance(messages, list) or not messages:
        raise BackendError(f"prompt {i} must be a non-empty list of messages, got {type(messages).__name__}")
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise BackendError(f'prompt {i}: every message needs "role" and "content", got {message!r:.200}')
        content = message["content"]
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise BackendError(f"prompt {i}: content must be a string or a list of parts")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image":
                raise BackendError(f"prompt {i}: unsupported content part {part!r:.200}")


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop string (excluded), as OpenAI-compatible servers do."""
    cut = min((pos for pos in (text.find(s) for s in stop) if pos >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def make_backend(config: BackendConfig, loaded: LoadedModel | None = None) -> Backend:
    """Build the backend ``config.kind`` names; only that backend's dependencies are imported.

    ``loaded``: an already-loaded model for the hf backend (skips loading ``config.model``).
    """
    if loaded is not None and config.kind != "hf":
        raise BackendError(f"an already-loaded model can only be used by the hf backend, not {config.kind!r}")
    if config.kind == "hf":
        from vlthinker.backends.hf import HFBackend

        return HFBackend(config, loaded=loaded)
    if config.kind == "vllm":
        from vlthinker.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    from vlthinker.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(config)
