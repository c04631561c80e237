"""Append-only JSONL journal that makes expensive per-record work resumable.

A step appends one line per finished record (flushed and fsynced per batch) to a journal beside its
output; an interrupted run re-reads it and skips those ids. A torn last line from a crash is ignored.
The final dataset is still written atomically; the journal is removed once it is in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def journal_path(output_dir: str | Path, name: str) -> Path:
    output = Path(output_dir)
    return output.parent / f".{output.name}.{name}.journal.jsonl"


class Journal:
    def __init__(self, path: Path, fingerprint: str):
        """``fingerprint`` identifies the inputs + settings; a journal written for others is discarded."""
        self.path = path
        self.fingerprint = fingerprint
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()
        self._handle = None

    def _load(self) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_bytes().splitlines()
        if not lines:
            return
        try:
            header = json.loads(lines[0])
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = {}
        if header.get("fingerprint") != self.fingerprint:
            self.path.unlink()
            return
        for raw in lines[1:]:
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn line from an interrupted write
            if isinstance(entry, dict) and "id" in entry:
                self.entries[entry["id"]] = entry

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.entries

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        if self._handle is None:
            new = not self.path.is_file()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
            if new:
                self._handle.write(json.dumps({"fingerprint": self.fingerprint}) + "\n")
        for entry in entries:
            self._handle.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
            self.entries[entry["id"]] = entry
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
