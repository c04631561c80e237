"""Datasets in the DVC remote: push a dataset directory, name it by its md5 ``.dir`` hash, fetch it back.

A dataset is identified by the hash DVC gives its directory (DESIGN §3): the md5 of the JSON list
of ``{"md5": <file md5>, "relpath": <posix path>}`` entries sorted by path, suffixed ``.dir``.
:func:`dir_md5` computes it without DVC, so a step can name a dataset before (or without) pushing it;
:func:`push_datasets` checks that DVC agrees.

Everything runs in a throw-away, git-less DVC workspace (``Repo.init(no_scm=True)``) so it works
inside a KFP component and beside any (or no) git repository:

* push: the directories are hard-linked (copied across file systems) into the workspace,
  ``repo.add`` + ``repo.push`` to the remote; objects already in the remote are not sent again. DVC
  only checks that an object exists, so in a local remote the objects of the pushed datasets are
  checked against their hash first and a corrupted one is removed, to be sent again (repaired).
* fetch: a ``.dvc`` file ``{outs: [{md5, path, hash: md5}]}`` is written (``hash: md5`` selects the
  DVC 3 layout) and ``repo.pull`` restores the directory byte for byte; the result is verified
  against the hash, then renamed into place (atomic); a mismatch names the corrupted files.

In the remote an object lives at ``files/md5/<first 2 hex>/<rest>`` (:func:`object_url`), so a hash
names its object.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from vlthinker.errors import VLThinkerError
from vlthinker.fsutil import swap_into_place
from vlthinker.logs import quiet_logger

REMOTE_NAME = "store"
_CHUNK = 1 << 20


class DatasetStoreError(VLThinkerError):
    """A dataset could not be pushed to, found in, or fetched from the DVC remote."""


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dir_entries(path: str | Path) -> list[dict[str, str]]:
    """``[{"md5", "relpath"}]`` of every file under ``path``, sorted by relative posix path."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetStoreError(f"{root}: not a directory")
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".dvc", ".git")]
        for name in filenames:
            file = Path(dirpath) / name
            entries.append({"md5": file_md5(file), "relpath": file.relative_to(root).as_posix()})
    return sorted(entries, key=lambda entry: entry["relpath"])


def dir_md5(path: str | Path) -> str:
    """The md5 ``.dir`` hash DVC 3 gives the directory (same bytes, same hash, on any machine)."""
    return _entries_md5(dir_entries(path))


def _entries_md5(entries: list[dict[str, str]]) -> str:
    blob = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(blob).hexdigest() + ".dir"


def check_md5(md5: str) -> str:
    """Validate a dataset hash (``<32 hex>.dir``) and return it lower-cased."""
    value = md5.strip().lower()
    hexpart = value.removesuffix(".dir")
    if not value.endswith(".dir") or len(hexpart) != 32 or any(c not in "0123456789abcdef" for c in hexpart):
        raise DatasetStoreError(f"{md5!r} is not a dataset hash (expected 32 hex digits + '.dir')")
    return value


def normalize_remote(remote: str | Path) -> str:
    """A remote URL as DVC wants it: URLs as given, local paths absolute."""
    text = str(remote)
    if "://" in text:
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def object_url(remote: str | Path, md5: str) -> str:
    """Where the object of ``md5`` lives in ``remote`` (``files/md5/<2>/<30>[.dir]``)."""
    value = check_md5(md5)
    return f"{normalize_remote(remote)}/files/md5/{value[:2]}/{value[2:]}"


@contextlib.contextmanager
def _workspace(remote: str | Path) -> Iterator[Any]:
    """A temporary git-less DVC repository whose default remote is ``remote``."""
    from dvc.repo import Repo

    url = normalize_remote(remote)
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    # "Initialized DVC repository." etc. would land on our stdout
    with quiet_logger("dvc"), tempfile.TemporaryDirectory(prefix="vlthinker-dvc-") as tmp:
        repo = Repo.init(tmp, no_scm=True)
        try:
            with repo.config.edit() as conf:
                conf["remote"][REMOTE_NAME] = {"url": url}
                conf["core"]["remote"] = REMOTE_NAME
                conf["core"]["analytics"] = False
            yield repo
        finally:
            repo.close()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def drop_corrupt_objects(entries: list[dict[str, str]], md5: str, remote: str | Path) -> list[Path]:
    """In a local remote, remove the objects of one dataset whose bytes no longer match their hash.

    DVC skips an object that exists (and every file of a directory whose ``.dir`` object exists), so
    a corrupted one would never be repaired by a push; removed (with the ``.dir`` object when a file
    is corrupted or missing), it is sent again. Returns the removed object paths (remote URLs are not
    checked: no-op).
    """
    url = normalize_remote(remote)
    if "://" in url:
        return []
    listing = Path(object_url(url, md5))
    removed = []
    if listing.is_file() and file_md5(listing) != md5.removesuffix(".dir"):
        listing.unlink()
        removed.append(listing)
    damaged = False
    for entry in entries:
        digest = entry["md5"]
        path = Path(url) / "files" / "md5" / digest[:2] / digest[2:]
        if not path.is_file():
            damaged = True
        elif file_md5(path) != digest:
            path.unlink()
            removed.append(path)
            damaged = True
    if damaged and listing.is_file():
        # DVC takes a present .dir object to mean all its files are there: without it, it checks each
        listing.unlink()
        removed.append(listing)
    if removed:
        logging.getLogger(__name__).warning(
            "DVC remote %s: %d corrupted object(s) of dataset %s removed, sending them again: %s",
            url,
            len(removed),
            md5,
            ", ".join(str(p) for p in removed[:5]),
        )
    return removed


def push_datasets(dataset_dirs: Sequence[str | Path], remote: str | Path) -> list[str]:
    """Push dataset directories to the DVC remote; return their md5 ``.dir`` hashes, in order.

    Idempotent: objects the remote already holds are skipped (in a local remote, after checking their
    hash: a corrupted object is sent again). Raises :class:`DatasetStoreError` naming the datasets
    and the remote when DVC fails, or when its hash disagrees with :func:`dir_md5`.
    """
    dirs = [Path(d) for d in dataset_dirs]
    for directory in dirs:
        if not directory.is_dir():
            raise DatasetStoreError(f"{directory}: not a dataset directory")
    if not dirs:
        return []
    listings = [dir_entries(d) for d in dirs]
    expected = [_entries_md5(entries) for entries in listings]
    try:
        for entries, md5 in zip(listings, expected, strict=True):
            drop_corrupt_objects(entries, md5, remote)
        with _workspace(remote) as repo:
            root = Path(repo.root_dir)
            targets = []
            for i, directory in enumerate(dirs):
                target = root / f"d{i}"
                shutil.copytree(directory, target, copy_function=_link_or_copy)
                targets.append(str(target))
            repo.add(targets)
            got = [_out_md5(root / f"d{i}.dvc") for i in range(len(dirs))]
            repo.push()
    except DatasetStoreError:
        raise
    except Exception as exc:  # dvc raises many types; the user needs one message
        names = ", ".join(str(d) for d in dirs)
        raise DatasetStoreError(
            f"pushing {len(dirs)} dataset(s) ({names}) to the DVC remote {remote} failed: {exc}"
        ) from exc
    for directory, want, have in zip(dirs, expected, got, strict=True):
        if want != have:
            raise DatasetStoreError(f"{directory}: DVC hashed it {have}, vlthinker {want}")
    return got


def push_dataset(dataset_dir: str | Path, remote: str | Path) -> str:
    return push_datasets([dataset_dir], remote)[0]


def _out_md5(dvc_file: Path) -> str:
    import yaml

    outs = yaml.safe_load(dvc_file.read_text())["outs"]
    return str(outs[0]["md5"])


def remote_has(md5: str, remote: str | Path) -> bool:
    """Whether the remote holds the directory object of ``md5`` (DVC uploads it after its files)."""
    value = check_md5(md5)
    url = normalize_remote(remote)
    if "://" not in url:
        return Path(object_url(url, value)).is_file()
    with _workspace(url) as repo:
        return bool(repo.cloud.get_remote_odb().exists(value))


def fetch_dataset(md5: str, output_dir: str | Path, remote: str | Path) -> Path:
    """Restore the dataset ``md5`` from the remote into ``output_dir`` (replaced atomically), verified."""
    value = check_md5(md5)
    output = Path(output_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _workspace(remote) as repo:
            import yaml

            root = Path(repo.root_dir)
            dvc_file = root / "data.dvc"
            dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": value, "path": "data", "hash": "md5"}]}))
            repo.pull(targets=[str(dvc_file)])
            restored = root / "data"
            got = dir_md5(restored)
            if got != value:
                raise DatasetStoreError(_corruption_message(value, got, restored, remote))
            staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
            staging.rmdir()
            shutil.move(str(restored), staging)
    except DatasetStoreError:
        raise
    except Exception as exc:
        raise DatasetStoreError(
            f"dataset {value} could not be fetched from {remote}: {exc}. Was it pushed there "
            f"(object {object_url(remote, value)})?"
        ) from exc
    return swap_into_place(staging, output)


def _corruption_message(md5: str, got: str, restored: Path, remote: str | Path) -> str:
    """Which restored files do not match the dataset's listing (the remote's ``.dir`` object)."""
    bad: list[str] = []
    listing = Path(object_url(remote, md5))
    if listing.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            want = {e["relpath"]: e["md5"] for e in json.loads(listing.read_text())}
            have = {e["relpath"]: e["md5"] for e in dir_entries(restored)}
            bad = sorted(rel for rel in want.keys() | have.keys() if want.get(rel) != have.get(rel))
    where = f"; corrupted or missing: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}" if bad else ""
    return (
        f"dataset {md5}: the copy restored from the DVC remote {remote} hashes to {got}: the remote "
        f"holds corrupted objects{where}. Push the dataset again from a good copy to repair them."
    )
