"""Captioning step: records without an exact caption get one from a VLM; exact captions are kept.

Resumable: captions are journaled per batch, and captions already present in a previous output for
the same record (same id and image hash) are reused, so a re-run only captions what is missing. A
previous output that no longer reads as a dataset (a corrupted line) is not trusted: it is reported
and everything it held is captioned again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlthinker.backends.base import Backend, SamplingParams
from vlthinker.errors import DatasetError
from vlthinker.prompts import user_message
from vlthinker.records import RECORDS_FILE, DatasetWriter, Record, iter_records, read_records
from vlthinker.steps.chain_sources import load_image
from vlthinker.steps.journal import Journal, journal_path

Log = Callable[[str], None]
EXACT = "exact"


def _previous_captions(output_dir: Path, log: Log = print) -> dict[tuple[str, str], tuple[str, str]]:
    """(id, image_sha256) -> (caption, caption_source) from an earlier complete output (none if corrupted)."""
    if not (output_dir / RECORDS_FILE).is_file():
        return {}
    found = {}
    try:
        for record in iter_records(output_dir):
            source = str(getattr(record, "caption_source", "") or "")
            if record.caption and source and source != EXACT:
                found[(record.id, record.image_sha256)] = (record.caption, source)
    except DatasetError as exc:
        log(f"caption: previous output {output_dir} is corrupted, not reused ({exc})")
        return {}
    return found


def caption_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    backend: Backend | None,
    captioner_name: str,
    prompt: str,
    sampling: SamplingParams,
    batch_size: int = 16,
    log: Log = print,
) -> dict[str, Any]:
    """Write ``output_dir`` with a caption on every record; return stats (also in ``stats.json``)."""
    input_path, output_path = Path(input_dir), Path(output_dir)
    records = read_records(input_path)
    previous = _previous_captions(output_path, log)
    fingerprint = hashlib.sha256(
        json.dumps({"captioner": captioner_name, "prompt": prompt, "sampling": repr(sampling)}).encode()
    ).hexdigest()
    journal = Journal(journal_path(output_path, "captions"), fingerprint)
    need = [
        r
        for r in records
        if not (r.caption_exact and r.caption)
        and r.id not in journal
        and (r.id, r.image_sha256) not in previous
    ]
    if need and backend is None:
        raise ValueError(f"{len(need)} records need a caption but no captioning backend is configured")
    for start in range(0, len(need), batch_size):
        batch = need[start : start + batch_size]
        outputs = backend.generate(
            [user_message(prompt) for _ in batch], [load_image(input_path, r) for r in batch], sampling
        )
        journal.append_many(
            [{"id": r.id, "caption": out[0].strip()} for r, out in zip(batch, outputs, strict=True)]
        )
        log(
            f"caption: {min(start + batch_size, len(need))}/{len(need)} records captioned by {captioner_name}"
        )

    counts = {"exact": 0, "generated": 0, "reused": 0, "empty": 0}
    with DatasetWriter(output_path) as writer:
        for record in records:
            payload = record.model_dump(mode="json", exclude_none=True)
            if record.caption_exact and record.caption:
                payload["caption_source"] = EXACT
                counts["exact"] += 1
            elif (record.id, record.image_sha256) in previous and record.id not in journal:
                payload["caption"], payload["caption_source"] = previous[(record.id, record.image_sha256)]
                counts["reused"] += 1
            else:
                payload["caption"] = journal.entries[record.id]["caption"]
                payload["caption_source"] = captioner_name
                counts["generated"] += 1
                counts["empty"] += not payload["caption"]
            writer.add_image(record.image, (input_path / record.image).read_bytes())
            writer.add(Record.model_validate(payload))
        stats = {"records": len(records), "captioner": captioner_name, "prompt": prompt, **counts}
        writer.write_stats(stats)
    journal.remove()
    return stats
