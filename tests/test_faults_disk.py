"""Fault injection: the disk fills up while a dataset is written (issue 9).

``vlthinker.records.open_raw`` is the one place a dataset file is opened for writing; the fault
replaces it with raw files that accept ``budget`` bytes in all and then fail with ``ENOSPC``, as a
full disk does (a short write, then the error). Driven through the real tasks on the smoke config:
the temporary directory must be gone, no dataset visible under its final name (a previous one
intact), the journal of expensive work kept, and the error must say "disk full" and name the file.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from vlthinker import records as records_module
from vlthinker.config import load_config
from vlthinker.datasets_dvc import dir_md5
from vlthinker.errors import DatasetError
from vlthinker.steps.journal import journal_path
from vlthinker.tasks.data import distill, make_sources

ROOT = Path(__file__).resolve().parents[1]


class FullDisk:
    """Raw files that share ``budget`` bytes; past it every write fails with ENOSPC."""

    def __init__(self, budget: int):
        self.left = budget
        self.failures = 0

    def open(self, path: Path) -> io.RawIOBase:
        disk = self

        class _Raw(io.FileIO):
            def write(self, data) -> int:
                if disk.left <= 0:
                    disk.failures += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                chunk = memoryview(data)[: disk.left]
                disk.left -= len(chunk)
                return super().write(chunk)

        return _Raw(path, "w")


@pytest.fixture(scope="module")
def smoke():
    return load_config(ROOT / "recipes" / "smoke.yaml")


@pytest.fixture(scope="module")
def reference(smoke, tmp_path_factory):
    """The smoke sources written on a healthy disk: their size and hashes."""
    root = tmp_path_factory.mktemp("disk-reference")
    make_sources(smoke, str(root / "train"), str(root / "heldout"))
    size = sum(p.stat().st_size for p in (root / "train").rglob("*") if p.is_file())
    return {"train": root / "train", "size": size, "md5": dir_md5(root / "train")}


def full_disk(monkeypatch, budget: int) -> FullDisk:
    disk = FullDisk(budget)
    monkeypatch.setattr(records_module, "open_raw", disk.open)
    return disk


def siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.999], ids=["first-byte", "half-way", "last-flush"])
def test_disk_full_while_writing_sources(smoke, reference, tmp_path, monkeypatch, fraction):
    disk = full_disk(monkeypatch, int(reference["size"] * fraction))
    with pytest.raises(DatasetError) as err:
        make_sources(smoke, str(tmp_path / "train"), str(tmp_path / "heldout"))
    message = str(err.value)
    assert disk.failures >= 1
    assert "disk full" in message and f"dataset {tmp_path / 'train'}" in message
    assert f"{tmp_path}/.train.tmp-" in message, "the file that could not be written is named"
    assert "nothing was written" in message
    assert siblings(tmp_path) == [], "no temporary directory left, no dataset under its final name"


def test_disk_full_leaves_an_existing_dataset_intact(smoke, reference, tmp_path, monkeypatch):
    make_sources(smoke, str(tmp_path / "train"), str(tmp_path / "heldout"))
    before = dir_md5(tmp_path / "train")
    assert before == reference["md5"]
    changed = load_config(ROOT / "recipes" / "smoke.yaml", {"data.seed": 7})
    full_disk(monkeypatch, reference["size"] // 3)
    with pytest.raises(DatasetError, match="disk full"):
        make_sources(changed, str(tmp_path / "train"), str(tmp_path / "heldout"))
    assert dir_md5(tmp_path / "train") == before
    assert siblings(tmp_path) == ["heldout", "train"]


def test_disk_full_while_writing_distilled_data_keeps_the_journal(smoke, reference, tmp_path, monkeypatch):
    output = tmp_path / "sft"
    full_disk(monkeypatch, 2000)
    with pytest.raises(DatasetError, match="disk full") as err:
        distill(smoke, str(reference["train"]), str(output))
    assert str(output) in str(err.value)
    journal = journal_path(output, "chains")
    assert siblings(tmp_path) == [journal.name], "only the journal of the sampled chains is left"

    monkeypatch.setattr(records_module, "open_raw", lambda path: io.FileIO(path, "w"))  # space again
    logs: list[str] = []
    from vlthinker.steps.distill import distill as distill_step

    stats = distill_step(smoke, reference["train"], output, log=logs.append)
    assert any("resuming, 120 of 120 items already sampled" in line for line in logs)
    assert stats["items"]["kept"] == len((output / "records.jsonl").read_text().splitlines()) > 0
    assert not journal.exists()
