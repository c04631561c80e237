"""Shared engine of the distill and self-generate steps: chains in, verified SFT dataset out.

A ``ChainSource`` samples k raw reasoning chains per record (the text-only teacher, or the VLM
itself). Raw chains are journaled per batch so an interrupted run resumes without re-asking the
source; the filters in ``traces`` then keep the shortest verified trace per item. Output: an SFT
dataset in TRL conversational form (prompt/completion, image referenced by the record) plus
``stats.json`` with pass@k per source and task and kept/dropped counts by reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vlthinker.prompts import assistant_message, reasoning_question, user_message
from vlthinker.records import DatasetWriter, Record, read_records
from vlthinker.steps.journal import Journal, journal_path
from vlthinker.steps.traces import DROP_REASONS, Trace, TraceFilterConfig, judge_chain, select_trace

ITEM_NO_CORRECT = "no_correct_chain"
ITEM_ALL_FILTERED = "correct_chains_all_filtered"

Log = Callable[[str], None]


class ChainSource(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """Settings that determine the chains (journal fingerprint, stats)."""
        ...

    def sample(self, records: list[Record], dataset_dir: Path, k: int) -> list[list[str]]:
        """k raw chains per record, in order."""
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
) -> dict[str, Any]:
    """Sample, filter and write; return the stats (also written to ``stats.json``)."""
    input_path, output_path = Path(input_dir), Path(output_dir)
    records = read_records(input_path)
    journal = Journal(journal_path(output_path, "chains"), _fingerprint(input_path, source, k))
    todo = [r for r in records if r.id not in journal]
    if len(todo) < len(records):
        log(f"{source.name}: resuming, {len(records) - len(todo)} of {len(records)} items already sampled")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        chains = source.sample(batch, input_path, k)
        if len(chains) != len(batch) or any(len(c) != k for c in chains):
            raise ValueError(f"{source.name}: expected {k} chains for each of {len(batch)} records")
        journal.append_many([{"id": r.id, "chains": c} for r, c in zip(batch, chains, strict=True)])
        log(f"{source.name}: sampled {len(records) - len(todo) + start + len(batch)}/{len(records)} items")

    stats = _Tally(source.name, k)
    with DatasetWriter(output_path) as writer:
        for record in records:
            verdicts = [
                judge_chain(c, record.answer, record.choices, filters)
                for c in journal.entries[record.id]["chains"]
            ]
            trace = select_trace(verdicts, filters.keep)
            stats.add(record, verdicts, trace)
            if trace is None:
                continue
            image_bytes = (input_path / record.image).read_bytes()
            writer.add_image(record.image, image_bytes)
            writer.add(sft_record(record, trace, source.name))
        summary = stats.summary(filters)
        writer.write_stats(summary)
    journal.remove()
    return summary


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

    def add(self, record: Record, verdicts, trace: Trace | None) -> None:
        self.items += 1
        self.chains += len(verdicts)
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

    def summary(self, filters: TraceFilterConfig) -> dict[str, Any]:
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
                    reason: self.item_drops.get(reason, 0) for reason in (ITEM_NO_CORRECT, ITEM_ALL_FILTERED)
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
        }
