"""Pure filters that turn raw reasoning chains into verified SFT traces (DESIGN §3, §6).

A raw chain is R1-style text: ``<think>reasoning</think>`` then a final answer (``\\boxed{}`` or
``<answer>``), or our own ``<think>…</think><answer>…</answer>``. Each chain is checked in order and
either becomes a trace or is dropped with one named reason; of an item's surviving traces the
shortest is kept. Distillation and self-generation use exactly these rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vlthinker.answers import extract_answer, format_ok, grade
from vlthinker.config import TraceFilterConfig

DROP_NO_THINK = "no_think_block"
DROP_MALFORMED = "malformed_tags"
DROP_NO_ANSWER = "no_final_answer"
DROP_WRONG = "wrong_answer"
DROP_EMPTY = "empty_after_truncation"
DROP_LOST_ANSWER = "truncation_lost_answer"
DROP_TOO_LONG = "too_long"
DROP_REASONS = (
    DROP_NO_THINK,
    DROP_MALFORMED,
    DROP_NO_ANSWER,
    DROP_WRONG,
    DROP_EMPTY,
    DROP_LOST_ANSWER,
    DROP_TOO_LONG,
)

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_THINK = re.compile(r"<think>(.*?)</think>(.*)", re.DOTALL)


@dataclass(frozen=True)
class Trace:
    reasoning: str
    answer: str
    truncated: bool

    @property
    def words(self) -> int:
        return word_count(self.reasoning)

    @property
    def completion(self) -> str:
        return f"<think>{self.reasoning}</think><answer>{self.answer}</answer>"


@dataclass(frozen=True)
class ChainVerdict:
    trace: Trace | None
    drop_reason: str | None
    correct: bool  # the chain's final answer grades correct (before length/truncation filters)


def word_count(text: str) -> int:
    return len(text.split())


def split_chain(chain: str) -> tuple[str, str] | None:
    """(reasoning, tail) of a chain with a think block; None when it has none."""
    match = _THINK.search(chain)
    if match is None:
        return None
    return match.group(1).strip(), match.group(2).strip()


def truncate_reflection(reasoning: str, markers: Sequence[str]) -> tuple[str, bool]:
    """Cut the reasoning at the first reflection marker; return (text, whether it was cut)."""
    cut = min((i for i in (reasoning.find(m) for m in markers if m) if i >= 0), default=-1)
    if cut < 0:
        return reasoning, False
    return reasoning[:cut].rstrip(), True


def judge_chain(
    chain: str, answer: str, choices: list[str] | None, config: TraceFilterConfig
) -> ChainVerdict:
    parts = split_chain(chain)
    if parts is None:
        return ChainVerdict(None, DROP_NO_THINK, False)
    reasoning, tail = parts
    if any(tag in reasoning for tag in _TAGS) or tail.count("<answer>") > 1 or "<think>" in tail:
        return ChainVerdict(None, DROP_MALFORMED, False)
    final = extract_answer(tail)
    if final is None:
        return ChainVerdict(None, DROP_NO_ANSWER, False)
    if not grade(final, answer, choices):
        return ChainVerdict(None, DROP_WRONG, False)
    truncated = False
    if config.truncate_reflections:
        reasoning, truncated = truncate_reflection(reasoning, config.reflection_markers)
    if not reasoning:
        return ChainVerdict(None, DROP_EMPTY, True)
    if truncated and config.require_answer_after_truncation and not mentions(reasoning, final):
        # The cut removed the step that reached the answer (e.g. a slip corrected after "Wait,"):
        # what is left would teach reasoning that does not lead to the answer.
        return ChainVerdict(None, DROP_LOST_ANSWER, True)
    trace = Trace(reasoning=reasoning, answer=final, truncated=truncated)
    if not format_ok(trace.completion):
        return ChainVerdict(None, DROP_MALFORMED, True)
    if trace.words > config.max_words:
        return ChainVerdict(None, DROP_TOO_LONG, True)
    return ChainVerdict(trace, None, True)


def mentions(text: str, answer: str) -> bool:
    """Whether ``answer`` appears in ``text`` as a whole word/number (case-insensitive)."""
    pattern = r"(?<![\w.])" + re.escape(answer.strip()) + r"(?![\w]|\.\d)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def select_trace(verdicts: Sequence[ChainVerdict], keep: str = "shortest") -> Trace | None:
    traces = [v.trace for v in verdicts if v.trace is not None]
    if not traces:
        return None
    if keep == "first":
        return traces[0]
    return min(traces, key=lambda t: (t.words, len(t.reasoning)))
