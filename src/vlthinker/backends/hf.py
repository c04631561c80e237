"""Transformers ``generate`` backend (CPU or GPU), batched, for image+text and text-only prompts.

``generate(loaded, ...)`` is the plain function (pretraining calls it on a model it just trained);
``HFBackend`` puts it behind the ``Backend`` interface. Greedy decoding with ``n > 1`` decodes once
and repeats the completion (greedy is deterministic). Stop strings are applied by truncating the
decoded text; generation itself runs to the end of turn or ``max_new_tokens``.
"""

from __future__ import annotations

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
    truncate_at_stop,
)
from vlthinker.model.loader import LoadedModel

__all__ = ["HFBackend", "SamplingParams", "generate"]


def generate(
    loaded: LoadedModel,
    prompts: Sequence[Prompt],
    images: Sequence[Any | None] | None,
    params: SamplingParams,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> list[list[str]]:
    """Return ``params.n`` completions per prompt, in prompt order.

    ``images[i]`` is a PIL image or None for a text-only prompt (the prompt then has no image part).
    """
    import torch

    requests = check_requests(prompts, images)
    processor = loaded.processor
    texts = [
        processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        for r in requests
    ]
    if params.seed is not None:
        torch.manual_seed(params.seed)
    outputs: list[list[str]] = []
    for start in range(0, len(texts), batch_size):
        batch_images = [r.image for r in requests[start : start + batch_size] if r.image is not None]
        outputs.extend(_generate_batch(loaded, texts[start : start + batch_size], batch_images, params))
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return outputs


def _generate_batch(
    loaded: LoadedModel, texts: list[str], images: list[Any], params: SamplingParams
) -> list[list[str]]:
    import torch

    processor, model = loaded.processor, loaded.model
    kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
    if images:
        kwargs["images"] = images
    inputs = processor(**kwargs).to(model.device)
    n_decoded = 1 if params.greedy else params.n
    with torch.inference_mode():
        generated = model.generate(**inputs, **_generate_kwargs(params, processor, n_decoded))
    new_tokens = generated[:, inputs["input_ids"].shape[1] :]
    decoded = [
        truncate_at_stop(_strip_special(text, processor.tokenizer), params.stop)
        for text in processor.batch_decode(new_tokens, skip_special_tokens=False)
    ]
    groups = [decoded[i * n_decoded : (i + 1) * n_decoded] for i in range(len(texts))]
    return [group * params.n if params.greedy else group for group in groups]


def _generate_kwargs(params: SamplingParams, processor, n_decoded: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "do_sample": not params.greedy,
        "num_return_sequences": n_decoded,
        "pad_token_id": processor.tokenizer.pad_token_id,
    }
    if params.greedy:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or 0)
    return kwargs


def _strip_special(text: str, tokenizer) -> str:
    """Cut at the end-of-turn token and drop padding; <think>/<answer> tags are kept (ordinary tokens)."""
    for end in {"<|im_end|>", tokenizer.eos_token} - {None}:
        text = text.split(end)[0]
    return text.replace(tokenizer.pad_token or "<|endoftext|>", "").strip()


class HFBackend(Backend):
    """Transformers backend: loads ``config.model`` through the one loader, or uses ``loaded``."""

    kind = "hf"

    def __init__(self, config: BackendConfig, loaded: LoadedModel | None = None):
        from vlthinker.model.loader import load_model

        self.config = config
        self.loaded: LoadedModel | None = loaded or load_model(
            config.model,
            trust_remote_code=config.trust_remote_code,
            dtype=config.dtype,
            device=config.device,
            min_pixels=config.min_pixels,
            max_pixels=config.max_pixels,
        )

    def generate(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[Any | None] | None = None,
        params: SamplingParams | None = None,
        progress: ProgressFn | None = None,
    ) -> list[list[str]]:
        if self.loaded is None:
            raise BackendError("the hf backend is closed")
        return generate(
            self.loaded, prompts, images, params or SamplingParams(), self.config.batch_size, progress
        )

    def close(self) -> None:
        """Drop the model reference (memory is freed once no one else holds it)."""
        self.loaded = None
