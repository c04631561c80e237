"""Where raw reasoning chains come from: the offline teacher, a text-only teacher backend, or a VLM.

* ``OfflineTeacherSource`` — the scripted offline teacher (synthetic sources only; labelled as such).
* ``TextTeacherSource`` — any backend (OpenAI-compatible R1 endpoint, vllm, hf) reading caption +
  question as text, as the paper's DeepSeek-R1-Distill teacher does. A request that fails (after the
  backend's retries) or answers garbage becomes a :class:`~vlthinker.steps.sft_data.SampleFailure`
  for that record only; the engine counts and bounds them.
* ``VLMSource`` — a vision-language model answering from the image itself (self-generation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlthinker.backends.base import Backend, BackendError, SamplingParams
from vlthinker.prompts import reasoning_question, user_message
from vlthinker.records import Record

# R1's recommended way to ask for a boxed final answer, with the caption standing in for the image.
TEXT_TEACHER_TEMPLATE = (
    "Here is a detailed description of an image.\n"
    "Image description: {caption}\n\n"
    "Question: {question}\n"
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)


def teacher_prompt(record: Record) -> list[dict[str, Any]]:
    if not record.caption:
        raise ValueError(
            f"record {record.id!r}: the text-only teacher needs a caption (run the caption step)"
        )
    text = TEXT_TEACHER_TEMPLATE.format(caption=record.caption, question=record.question)
    return user_message(text, with_image=False)


def load_image(dataset_dir: Path, record: Record):
    from PIL import Image

    with Image.open(dataset_dir / record.image) as image:
        return image.convert("RGB")


class OfflineTeacherSource:
    """The scripted offline teacher for synthetic items (never a substitute for a real teacher)."""

    def __init__(self, config):
        from vlthinker.teacher.offline import OFFLINE_TEACHER_NAME, OfflineTeacher

        self.name = OFFLINE_TEACHER_NAME
        self.config = config
        self.teacher = OfflineTeacher(config)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config.model_dump(mode="json")}

    def sample(self, records: list[Record], dataset_dir: Path, k: int) -> list[list[str]]:
        return [
            self.teacher.sample(
                record.id,
                record.caption or "",
                record.question,
                record.task,
                str(getattr(record, "question_type", "") or ""),
                k,
            )
            for record in records
        ]


class TextTeacherSource:
    """A text-only reasoning model behind any backend, reading caption + question."""

    def __init__(self, backend: Backend, sampling: SamplingParams, name: str):
        self.backend, self.sampling, self.name = backend, sampling, name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sampling": repr(self.sampling), "template": TEXT_TEACHER_TEMPLATE}

    def counters(self) -> dict[str, int]:
        """The backend's request counters (requests, retries, failed, malformed), when it keeps them."""
        return dict(getattr(self.backend, "counters", None) or {})

    def sample(self, records: list[Record], dataset_dir: Path, k: int) -> list[Any]:
        from vlthinker.steps.sft_data import SampleFailure

        params = _with_n(self.sampling, k)
        prompts = [teacher_prompt(r) for r in records]
        each = getattr(self.backend, "generate_each", None)
        if each is not None:
            results = each(prompts, None, params)
        else:
            try:
                results = self.backend.generate(prompts, None, params)
            except BackendError as exc:  # all or nothing: the whole batch failed
                results = [exc] * len(records)
        return [SampleFailure.from_error(r) if isinstance(r, BackendError) else r for r in results]


class VLMSource:
    """A VLM answering from the image in the reasoning format (the paper's iteration >= 2 data)."""

    def __init__(self, backend: Backend, sampling: SamplingParams, name: str):
        self.backend, self.sampling, self.name = backend, sampling, name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sampling": repr(self.sampling)}

    def sample(self, records: list[Record], dataset_dir: Path, k: int) -> list[list[str]]:
        params = _with_n(self.sampling, k)
        prompts = [user_message(reasoning_question(r.question)) for r in records]
        images = [load_image(dataset_dir, r) for r in records]
        return self.backend.generate(prompts, images, params)


def _with_n(params: SamplingParams, n: int) -> SamplingParams:
    from dataclasses import replace

    return replace(params, n=n)
