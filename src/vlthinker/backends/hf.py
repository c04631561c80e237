"""Transformers ``generate`` backend (CPU or GPU), batched, for image+text and text-only prompts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vlthinker.model.loader import LoadedModel


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1


def generate(
    loaded: LoadedModel,
    prompts: Sequence[list[dict[str, Any]]],
    images: Sequence[Any | None],
    params: SamplingParams,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """Return ``params.n`` completions per prompt, in prompt order.

    ``images[i]`` is a PIL image or None for a text-only prompt (the prompt then has no image part).
    """
    import torch

    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    processor, model = loaded.processor, loaded.model
    texts = [processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    outputs: list[list[str]] = []
    do_sample = params.temperature > 0
    for start in range(0, len(texts), batch_size):
        batch_texts = texts[start : start + batch_size]
        batch_images = [img for img in images[start : start + batch_size] if img is not None]
        kwargs: dict[str, Any] = {"text": batch_texts, "return_tensors": "pt", "padding": True}
        if batch_images:
            kwargs["images"] = batch_images
        inputs = processor(**kwargs).to(model.device)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": do_sample,
            "num_return_sequences": params.n,
            "pad_token_id": processor.tokenizer.pad_token_id,
        }
        if do_sample:
            gen_kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            generated = model.generate(**inputs, **gen_kwargs)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        decoded = processor.batch_decode(new_tokens, skip_special_tokens=False)
        decoded = [_strip_special(text, processor.tokenizer) for text in decoded]
        for i in range(len(batch_texts)):
            outputs.append(decoded[i * params.n : (i + 1) * params.n])
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return outputs


def _strip_special(text: str, tokenizer) -> str:
    """Cut at the end-of-turn token and drop padding; <think>/<answer> tags are kept (ordinary tokens)."""
    for end in {"<|im_end|>", tokenizer.eos_token} - {None}:
        text = text.split(end)[0]
    return text.replace(tokenizer.pad_token or "<|endoftext|>", "").strip()
