"""Data contract of a dataset directory: `records.jsonl` + `images/` (+ `stats.json`).

Every record is validated by a pydantic model on read and on write. Writes are atomic: the whole
directory is built under a temporary name beside the target and renamed into place, so a reader
never sees a half-written dataset under its final name. A write that fails (disk full, I/O error)
removes the temporary directory and raises one :class:`DatasetError` naming the dataset, the file
and the cause; a dataset already at the target stays as it was. Every file is opened through
:func:`open_raw`, the one edge where tests inject a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlthinker.errors import DatasetError
from vlthinker.fsutil import swap_into_place

RECORDS_FILE = "records.jsonl"
IMAGES_DIR = "images"
STATS_FILE = "stats.json"

Split = Literal["train", "heldout", "test", "testmini"]


class Record(BaseModel):
    """One image + question + ground-truth answer, with optional per-kind fields."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    task: str = Field(min_length=1)
    image: str = Field(min_length=1, description="path relative to the dataset directory")
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    split: str = Field(min_length=1)
    caption: str | None = None
    caption_exact: bool = False
    difficulty: int | None = Field(default=None, ge=1)
    choices: list[str] | None = None

    @field_validator("image")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        path = Path(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"image path {value!r} must be relative and stay inside the dataset")
        return value


def open_raw(path: Path) -> io.RawIOBase:
    """Open one dataset file for writing, unbuffered: the lowest layer every dataset write goes through."""
    return io.FileIO(path, "w")


def _write_file(path: Path, data: bytes) -> None:
    with io.BufferedWriter(open_raw(path)) as handle:
        handle.write(data)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_record(record: Record) -> str:
    """One canonical JSON line (sorted keys, no NaN) so equal datasets are byte-identical."""
    return json.dumps(record.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False)


def iter_records(dataset_dir: str | Path) -> Iterator[Record]:
    """Yield validated records; any broken line raises DatasetError naming the file, line and rule."""
    path = Path(dataset_dir) / RECORDS_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: not found (a dataset directory holds {RECORDS_FILE} and {IMAGES_DIR}/)")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(payload, dict):
                raise DatasetError(
                    f"{path}:{lineno}: a record must be a JSON object, got {type(payload).__name__}"
                )
            try:
                yield Record.model_validate(payload)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "<record>"
                rid = payload.get("id", "?")
                raise DatasetError(
                    f"{path}:{lineno}: record {rid!r}: field {field!r}: {first['msg']} (got {first.get('input')!r})"
                ) from None


def read_records(dataset_dir: str | Path) -> list[Record]:
    return list(iter_records(dataset_dir))


class DatasetWriter:
    """Builds a dataset in a temporary sibling directory; `commit()` renames it into place.

    Use as a context manager: an exception inside the block removes the temporary directory and
    leaves any existing dataset at the target untouched. An ``OSError`` while writing (or while
    committing) does the same and becomes a :class:`DatasetError` that names the file and the cause.
    """

    def __init__(self, output_dir: str | Path, overwrite: bool = True):
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.output_dir.exists() and not overwrite:
            raise DatasetError(f"{self.output_dir}: already exists (pass overwrite to replace it)")
        self._ids: set[str] = set()
        self.count = 0
        self._records: io.TextIOWrapper | None = None
        try:
            self.tmp_dir = Path(
                tempfile.mkdtemp(prefix=f".{self.output_dir.name}.tmp-", dir=self.output_dir.parent)
            )
        except OSError as exc:
            raise self._write_error(exc, self.output_dir.parent) from exc
        try:
            (self.tmp_dir / IMAGES_DIR).mkdir()
            raw = open_raw(self.tmp_dir / RECORDS_FILE)
            self._records = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", newline="\n")
        except OSError as exc:
            raise self._failed(exc, self.tmp_dir / RECORDS_FILE) from exc

    def _write_error(self, exc: OSError, path: Path) -> DatasetError:
        cause = "disk full (no space left on device)" if exc.errno == errno.ENOSPC else str(exc)
        return DatasetError(
            f"dataset {self.output_dir}: writing {path} failed: {cause}; the partial dataset was "
            f"removed and nothing was written under {self.output_dir}"
        )

    def _failed(self, exc: OSError, path: Path) -> DatasetError:
        """Remove the temporary directory; the error to raise for ``exc`` while writing ``path``."""
        self.abort()
        return self._write_error(exc, path)

    def add_image(self, relative_path: str, data: bytes) -> str:
        """Write image bytes under the dataset; return their sha256."""
        target = self.tmp_dir / relative_path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_file(target, data)
        except OSError as exc:
            raise self._failed(exc, target) from exc
        return sha256_bytes(data)

    def add(self, record: Record) -> None:
        if record.id in self._ids:
            raise DatasetError(f"{self.output_dir}: duplicate record id {record.id!r}")
        if not (self.tmp_dir / record.image).is_file():
            raise DatasetError(
                f"{self.output_dir}: record {record.id!r}: image {record.image!r} was not written"
            )
        self._ids.add(record.id)
        try:
            self._records.write(dump_record(record) + "\n")
        except OSError as exc:
            raise self._failed(exc, self.tmp_dir / RECORDS_FILE) from exc
        self.count += 1

    def write_stats(self, stats: dict) -> None:
        target = self.tmp_dir / STATS_FILE
        try:
            _write_file(target, (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        except OSError as exc:
            raise self._failed(exc, target) from exc

    def commit(self) -> Path:
        target = self.tmp_dir / RECORDS_FILE
        try:
            self._records.close()  # flushes the last buffered records: a full disk shows up here too
            with target.open("rb") as handle:
                os.fsync(handle.fileno())
            return swap_into_place(self.tmp_dir, self.output_dir)
        except OSError as exc:
            raise self._failed(exc, target) from exc

    def abort(self) -> None:
        if self._records is not None and not self._records.closed:
            # the flush that failed fails again; the directory goes anyway
            with contextlib.suppress(OSError):
                self._records.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self.tmp_dir.exists():
            self.commit()


def write_dataset(
    output_dir: str | Path, items: Iterable[tuple[Record, bytes]], stats: dict | None = None
) -> Path:
    """Write (record, image bytes) pairs atomically; image paths come from each record."""
    with DatasetWriter(output_dir) as writer:
        for record, image_bytes in items:
            digest = writer.add_image(record.image, image_bytes)
            if digest != record.image_sha256:
                raise DatasetError(f"record {record.id!r}: image_sha256 does not match the image bytes")
            writer.add(record)
        if stats is not None:
            writer.write_stats(stats)
    return Path(output_dir)
