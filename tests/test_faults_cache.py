"""Fault injection: corrupted cache entries are detected by hash and recomputed (issue 9).

The base-model pretraining cache has its own test (``test_pretrain``). The other content caches:

* the DVC remote, the content-addressed store every dataset is pushed to: a corrupted object is
  detected by hash when the dataset is fetched (the error names the file), and pushing the dataset
  again repairs it (DVC alone only checks that an object exists, so it would keep the bad bytes);
* the caption step's reuse of a previous output's captions, keyed by record id and image hash: a
  record whose image changed is captioned again, and a corrupted previous output is not trusted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_backends import FakeServer

from vlthinker.config import load_config
from vlthinker.datasets_dvc import DatasetStoreError, dir_entries, dir_md5, fetch_dataset, file_md5
from vlthinker.records import Record, read_records, sha256_bytes, write_dataset
from vlthinker.tasks.data import caption, make_sources, publish

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache-faults")
    make_sources(load_config(ROOT / "recipes" / "smoke.yaml"), str(root / "train"), str(root / "heldout"))
    return root


def remote_object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def test_corrupted_dvc_object_is_detected_and_repaired_by_the_next_push(smoke_sets, tmp_path):
    heldout, remote = smoke_sets / "heldout", tmp_path / "remote"
    md5 = publish(str(heldout), str(remote))["dvc_md5"]
    entry = next(e for e in dir_entries(heldout) if e["relpath"].startswith("images/"))
    damaged = remote_object(remote, entry["md5"])
    damaged.write_bytes(damaged.read_bytes()[:-8] + b"\0" * 8)  # bit rot in one image

    with pytest.raises(DatasetStoreError) as err:
        fetch_dataset(md5, tmp_path / "restored", remote)
    assert (
        entry["relpath"] in str(err.value) and "corrupted" in str(err.value) and str(remote) in str(err.value)
    )
    assert not (tmp_path / "restored").exists()

    assert publish(str(heldout), str(remote))["dvc_md5"] == md5  # the same dataset, pushed again
    assert file_md5(damaged) == entry["md5"], "the corrupted object was sent again"
    fetch_dataset(md5, tmp_path / "restored", remote)
    assert dir_md5(tmp_path / "restored") == md5


def test_a_missing_dvc_object_is_sent_again(smoke_sets, tmp_path):
    heldout, remote = smoke_sets / "heldout", tmp_path / "remote"
    md5 = publish(str(heldout), str(remote))["dvc_md5"]
    entry = dir_entries(heldout)[-1]
    remote_object(remote, entry["md5"]).unlink()
    publish(str(heldout), str(remote))
    assert file_md5(remote_object(remote, entry["md5"])) == entry["md5"]
    fetch_dataset(md5, tmp_path / "restored", remote)


@pytest.fixture
def captioner():
    server = FakeServer()
    yield server
    server.stop()


def uncaptioned(train: Path, out: Path, n: int = 12) -> Path:
    """The first ``n`` smoke records without their exact captions: each needs the captioner."""
    items = []
    for record in read_records(train)[:n]:
        payload = record.model_dump(mode="json", exclude_none=True)
        payload.pop("caption", None)
        payload["caption_exact"] = False
        items.append((Record.model_validate(payload), (train / record.image).read_bytes()))
    return write_dataset(out, items)


def test_caption_cache_follows_image_hashes_and_ignores_a_corrupted_output(
    smoke_sets, captioner, tmp_path, capsys
):
    source = uncaptioned(smoke_sets / "train", tmp_path / "source")
    config = load_config(
        ROOT / "recipes" / "smoke.yaml",
        {"caption.backend": {"kind": "openai", "model": "captioner", "base_url": captioner.base_url}},
    )
    output = tmp_path / "captioned"
    first = caption(config, str(source), "unused-base", str(output))
    assert (first["generated"], first["reused"]) == (12, 0) and len(captioner.requests) == 12

    # one image changes: its cached caption no longer matches by hash and is made again
    records = read_records(source)
    changed = records[4]
    new_bytes = (source / changed.image).read_bytes() + b"\0"
    items = [
        (
            r.model_copy(update={"image_sha256": sha256_bytes(new_bytes)}) if r.id == changed.id else r,
            new_bytes if r.id == changed.id else (source / r.image).read_bytes(),
        )
        for r in records
    ]
    write_dataset(source, items)
    second = caption(config, str(source), "unused-base", str(output))
    assert (second["generated"], second["reused"]) == (1, 11) and len(captioner.requests) == 13

    # a corrupted previous output is reported and not trusted: everything is captioned again
    lines = (output / "records.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    (output / "records.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    third = caption(config, str(source), "unused-base", str(output))
    logs = capsys.readouterr().out.splitlines()
    assert any("is corrupted, not reused" in line and "records.jsonl:3" in line for line in logs)
    assert (third["generated"], third["reused"]) == (12, 0) and len(captioner.requests) == 25
    assert len(read_records(output)) == 12
