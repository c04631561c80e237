"""Shared engine of the distill and self-generate steps: chains in, verified SFT dataset out.

A ``ChainSource`` samples k raw reasoning chains per record (the text-only teacher, or the VLM
itself). Raw chains are journaled per batch so an interrupted run resumes without re-asking the
source; the filters in ``traces`` then keep the shortest verified trace per item. Output: an SFT
dataset in TRL conversational form (prompt/completion, image referenced by the record) plus
``stats.json`` with pass@k per source and task and kept/dropped counts by reason.

Faults of the source are counted, bounded and reported (``stats.json`` ``failures``): a record whose
request failed or was answered with something that is not a completion comes back as a
:class:`SampleFailure` (not journaled, so a re-run asks again); a record whose every chain is
garbage (no think block, broken tags, no final answer) is a garbage item. With ``max_failed_share``
set, more failed + garbage items than that share of all items stops the step with
:class:`SourceFailureError` — during sampling as soon as the failures alone pass it — and nothing is
written; the journal keeps what was answered.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vlthinker.errors import VLThinkerError
from vlthinker.prompts import assistant_message, reasoning_question, user_message
from vlthinker.records import DatasetWriter, Record, read_records
from vlthinker.steps.journal import Journal, journal_path
from vlthinker.steps.traces import (
    DROP_MALFORMED,
    DROP_NO_ANSWER,
    DROP_NO_THINK,
    DROP_REASONS,
    Trace,
    TraceFilterConfig,
    judge_chain,
    select_trace,
)

ITEM_NO_CORRECT = "no_correct_chain"
ITEM_ALL_FILTERED = "correct_chains_all_filtered"
ITEM_FAILED = "request_failed"
GARBAGE_REASONS = frozenset({DROP_NO_THINK, DROP_MALFORMED, DROP_NO_ANSWER})
_EXAMPLES = 3

Log = Callable[[str], None]


class SourceFailureError(VLThinkerError):
    """Too many items got a failed request or only garbage from the chain source (see the bound)."""


@dataclass(frozen=True)
class SampleFailure:
    """A record the source could not answer: ``kind`` is request_failed or malformed_response."""

    kind: str
    message: str

    @classmethod
    def from_error(cls, exc: BaseException) -> SampleFailure:
        from vlthinker.backends.openai_backend import MalformedResponseError

        kind = "malformed_response" if isinstance(exc, MalformedResponseError) else "request_failed"
        return cls(kind, str(exc))


class ChainSource(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """Settings that determine the chains (journal fingerprint, stats)."""
        ...

    def sample(self, records: list[Record], dataset_dir: Path, k: int) -> list[list[str] | SampleFailure]:
        """k raw chains per record, in order (or a SampleFailure for a record that got none)."""
        ...


def sft_record(record: Record, trace: Trace, origin: str) -> Record:
    """The SFT row: our record fields + TRL conversational prompt/completion + the trace."""
    payload = record.model_dump(mode="json", exclude_none=True)
    payload.update(
        prompt=user_message(reasoning_question(record.question)),
        completion=assistant_message(trace.completion),
        reasoning=trace.reasoning,
        response=trace.completion,
        trace_words=trace.words,
        reflection_truncated=trace.truncated,
        trace_origin=origin,
    )
    return Record.model_validate(payload)


def _fingerprint(input_dir: Path, source: ChainSource, k: int) -> str:
    digest = hashlib.sha256((input_dir / "records.jsonl").read_bytes())
    digest.update(json.dumps({"source": source.describe(), "k": k}, sort_keys=True).encode())
    return digest.hexdigest()


def make_sft_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    source: ChainSource,
    k: int,
    filters: TraceFilterConfig,
    batch_size: int = 32,
    log: Log = print,
    max_failed_share: float | None = None,
    bound_key: str = "max_failed_share",
) -> dict[str, Any]:
    """Sample, filter and write; return the stats (also written to ``stats.json``).

    ``max_failed_share``: the most failed + garbage items (a share of all items) the step accepts;
    past it :class:`SourceFailureError` (``bound_key`` names the setting in its message). None: no bound.
    """
    input_path, output_path = Path(input_dir), Path(output_dir)
    records = read_records(input_path)
    journal = Journal(journal_path(output_path, "chains"), _fingerprint(input_path, source, k))
    todo = [r for r in records if r.id not in journal]
    if len(todo) < len(records):
        log(f"{source.name}: resuming, {len(records) - len(todo)} of {len(records)} items already sampled")
    failures: dict[str, SampleFailure] = {}
    limit = None if max_failed_share is None else max_failed_share * len(records)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        results = source.sample(batch, input_path, k)
        if len(results) != len(batch):
            raise ValueError(f"{source.name}: expected {k} chains for each of {len(batch)} records")
        answered = []
        for record, result in zip(batch, results, strict=True):
            if isinstance(result, SampleFailure):
                failures[record.id] = result
                continue
            if len(result) != k or not all(isinstance(chain, str) for chain in result):
                raise ValueError(f"{source.name}: expected {k} chains for record {record.id!r}")
            answered.append({"id": record.id, "chains": list(result)})
        if answered:
            journal.append_many(answered)
        done = len(records) - len(todo) + start + len(batch)
        failed_note = f" ({len(failures)} failed)" if failures else ""
        log(f"{source.name}: sampled {done}/{len(records)} items{failed_note}")
        if limit is not None and len(failures) > limit:
            journal.close()
            tally = _Tally(source.name, k)
            for failure in failures.values():
                tally.fail(failure)
            raise SourceFailureError(
                _bound_message(source, tally, len(records), max_failed_share, bound_key, output_path, journal)
                + f" (stopped after asking for {done} of {len(records)} items)"
            )

    stats = _Tally(source.name, k)
    kept: list[tuple[Record, Trace]] = []
    for record in records:
        if record.id in failures:
            stats.fail(failures[record.id])
            continue
        verdicts = [
            judge_chain(c, record.answer, record.choices, filters)
            for c in journal.entries[record.id]["chains"]
        ]
        trace = select_trace(verdicts, filters.keep)
        stats.add(record, verdicts, trace)
        if trace is not None:
            kept.append((record, trace))
    counters = getattr(source, "counters", None)
    summary = stats.summary(filters, counters() if callable(counters) else None)
    if limit is not None and stats.failed + stats.garbage > limit:
        journal.close()
        raise SourceFailureError(
            _bound_message(source, stats, len(records), max_failed_share, bound_key, output_path, journal)
        )
    if stats.failed or stats.garbage:
        log(
            f"{source.name}: {stats.failed} failed and {stats.garbage} garbage item(s) of {len(records)} "
            f"({summary['failures']['share']:.1%}); see failures in stats.json"
        )
    with DatasetWriter(output_path) as writer:
        for record, trace in kept:
            image_bytes = (input_path / record.image).read_bytes()
            writer.add_image(record.image, image_bytes)
            writer.add(sft_record(record, trace, source.name))
        writer.write_stats(summary)
    journal.remove()
    return summary


def _bound_message(
    source: ChainSource,
    tally: _Tally,
    total: int,
    max_share: float | None,
    bound_key: str,
    output: Path,
    journal: Journal,
) -> str:
    bad = tally.failed + tally.garbage
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.failed_by_kind.items())) or "none"
    examples = "; ".join(tally.examples) or "-"
    return (
        f"{source.name}: {bad} of {total} items ({bad / max(total, 1):.1%}) got no usable answer, more "
        f"than {bound_key} = {max_share:.1%}: {tally.failed} failed request(s) ({kinds}), "
        f"{tally.garbage} garbage item(s) (every chain without a think block, with broken tags or "
        f"without a final answer). First errors: {examples}. Nothing was written to {output}; the "
        f"{len(journal.entries)} items answered so far are kept in {journal.path} and a re-run resumes "
        "from them."
    )


class _Tally:
    """Counts for stats.json: per item and per chain, by reason, source and task."""

    def __init__(self, source_name: str, k: int):
        self.source_name, self.k = source_name, k
        self.items = 0
        self.kept = 0
        self.item_drops: Counter = Counter()
        self.chain_drops: Counter = Counter()
        self.chains = 0
        self.correct_chains = 0
        self.truncated_kept = 0
        self.pass_by: dict[str, dict[str, list[int]]] = {
            "source": defaultdict(list),
            "task": defaultdict(list),
        }
        self.kept_by_task: Counter = Counter()
        self.failed = 0
        self.failed_by_kind: Counter = Counter()
        self.garbage = 0
        self.examples: list[str] = []

    def fail(self, failure: SampleFailure) -> None:
        self.items += 1
        self.failed += 1
        self.failed_by_kind[failure.kind] += 1
        self.item_drops[ITEM_FAILED] += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(failure.message[:400])

    def add(self, record: Record, verdicts, trace: Trace | None) -> None:
        self.items += 1
        self.chains += len(verdicts)
        if verdicts and all(v.drop_reason in GARBAGE_REASONS for v in verdicts):
            self.garbage += 1
        correct = sum(v.correct for v in verdicts)
        self.correct_chains += correct
        for verdict in verdicts:
            if verdict.drop_reason:
                self.chain_drops[verdict.drop_reason] += 1
        self.pass_by["source"][record.source].append(int(correct > 0))
        self.pass_by["task"][record.task].append(int(correct > 0))
        if trace is None:
            self.item_drops[ITEM_NO_CORRECT if correct == 0 else ITEM_ALL_FILTERED] += 1
            return
        self.kept += 1
        self.kept_by_task[record.task] += 1
        self.truncated_kept += trace.truncated

    def summary(
        self,
        filters: TraceFilterConfig,
        requests: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        def rates(groups):
            return {name: round(sum(v) / len(v), 4) for name, v in sorted(groups.items())}

        return {
            "chain_source": self.source_name,
            "k": self.k,
            "filters": filters.model_dump(),
            "items": {
                "total": self.items,
                "kept": self.kept,
                "dropped": {
                    reason: self.item_drops.get(reason, 0)
                    for reason in (ITEM_NO_CORRECT, ITEM_ALL_FILTERED, ITEM_FAILED)
                },
                "kept_by_task": dict(sorted(self.kept_by_task.items())),
            },
            "chains": {
                "total": self.chains,
                "correct": self.correct_chains,
                "pass_at_1": round(self.correct_chains / max(self.chains, 1), 4),
                "dropped": {reason: self.chain_drops.get(reason, 0) for reason in DROP_REASONS},
                "kept_traces_truncated_at_reflection": self.truncated_kept,
            },
            "pass_at_k": {"by_source": rates(self.pass_by["source"]), "by_task": rates(self.pass_by["task"])},
            "failures": {
                "failed_items": self.failed,
                "failed_by_kind": dict(sorted(self.failed_by_kind.items())),
                "garbage_items": self.garbage,
                "share": round((self.failed + self.garbage) / max(self.items, 1), 4),
                "examples": list(self.examples),
                "requests": dict(requests or {}),
            },
        }
