"""vLLM offline-engine backend (the ``gpu`` extra): ``vllm.LLM(...).chat(...)`` on batches of conversations.

``vllm`` is imported when a ``VLLMBackend`` is built, never at module import, so this module (and its
pure request-building helpers) loads on machines without vllm. Images travel as PIL images in
``{"type": "image_pil"}`` content parts; vLLM applies the model's chat template and image processor.
Greedy decoding with ``n > 1`` decodes once and repeats the completion, as the hf backend does.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from vlthinker.backends.base import (
    Backend,
    BackendConfig,
    BackendError,
    ProgressFn,
    Prompt,
    SamplingParams,
    check_requests,
)

VLLM_MISSING = "vllm backend needs the gpu extra: pip install 'vlthinker[gpu]' on a CUDA machine"


def import_vllm() -> Any:
    """The ``vllm`` module, or a ``BackendError`` saying how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise BackendError(f"{VLLM_MISSING} (import vllm failed: {exc})") from None
    return vllm


def to_vllm_messages(messages: Prompt, image: Any | None) -> list[dict[str, Any]]:
    """One conversation as ``LLM.chat`` takes it: the ``{"type": "image"}`` part carries the PIL image."""
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_pil", "image_pil": image}
                if part.get("type") == "image"
                else {"type": "text", "text": part["text"]}
                for part in content
            ]
        converted.append({"role": message["role"], "content": content})
    return converted


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` (greedy asks for one completion, see module doc)."""
    kwargs: dict[str, Any] = {
        "n": 1 if params.greedy else params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
    }
    if params.top_k is not None:
        kwargs["top_k"] = params.top_k
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    return kwargs


def engine_kwargs(config: BackendConfig) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the backend config."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "trust_remote_code": config.trust_remote_code,
        "limit_mm_per_prompt": {"image": 1},
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    pixels = {k: v for k, v in (("min_pixels", config.min_pixels), ("max_pixels", config.max_pixels)) if v}
    if pixels:
        kwargs["mm_processor_kwargs"] = pixels
    return kwargs


class VLLMBackend(Backend):
    """Offline vLLM engine; ``batch_size`` conversations per ``LLM.chat`` call (make it large)."""

    kind = "vllm"

    def __init__(self, config: BackendConfig):
        self._vllm = import_vllm()
        self.config = config
        self._llm: Any | None = self._vllm.LLM(**engine_kwargs(config))

    def generate(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[Any | None] | None = None,
        params: SamplingParams | None = None,
        progress: ProgressFn | None = None,
    ) -> list[list[str]]:
        if self._llm is None:
            raise BackendError("the vllm backend is closed")
        params = params or SamplingParams()
        requests = check_requests(prompts, images)
        sampling = self._vllm.SamplingParams(**sampling_kwargs(params))
        outputs: list[list[str]] = []
        size = self.config.batch_size
        for start in range(0, len(requests), size):
            chunk = requests[start : start + size]
            conversations = [to_vllm_messages(r.messages, r.image) for r in chunk]
            results = self._llm.chat(conversations, sampling_params=sampling, use_tqdm=False)
            outputs.extend(_texts(results, len(chunk), params))
            if progress:
                progress(start + len(chunk), len(requests))
        return outputs

    def close(self) -> None:
        """Drop the engine so its GPU memory can be released."""
        self._llm = None
        gc.collect()


def _texts(results: Sequence[Any], expected: int, params: SamplingParams) -> list[list[str]]:
    if len(results) != expected:
        raise BackendError(f"vllm returned {len(results)} results for {expected} prompts")
    texts = []
    for result in results:
        completions = [completion.text for completion in result.outputs]
        texts.append(completions * params.n if params.greedy else completions)
    return texts
