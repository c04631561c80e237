"""Prompts shared by pretraining, distillation, training and evaluation (one place, so they match)."""

from __future__ import annotations

from typing import Any

# Base pretraining / captioning: dense description of the image.
CAPTION_PROMPT = "Describe the image."
# The paper prompts its Qwen baseline for a direct answer in \boxed{}.
DIRECT_ANSWER_INSTRUCTION = "Answer the question directly with the final answer in \\boxed{}."
# R1-style reasoning format used by SFT, GRPO and evaluation of reasoning models.
REASONING_INSTRUCTION = "Think step by step inside <think> </think> tags, then give the final answer inside <answer> </answer> tags."


def user_message(text: str, with_image: bool = True) -> list[dict[str, Any]]:
    """A one-turn conversational prompt, image first then text (Qwen2.5-VL order)."""
    content: list[dict[str, Any]] = []
    if with_image:
        content.append({"type": "image"})
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def assistant_message(text: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def direct_question(question: str) -> str:
    return f"{question}\n{DIRECT_ANSWER_INSTRUCTION}"


def reasoning_question(question: str) -> str:
    return f"{question}\n{REASONING_INSTRUCTION}"
