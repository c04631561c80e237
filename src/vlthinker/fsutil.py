"""Atomic directory replacement: the one way every step puts a finished directory at its final name."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def swap_into_place(staging: str | Path, target: str | Path) -> Path:
    """Rename the complete ``staging`` directory to ``target``, replacing any old ``target``.

    ``staging`` must be on the same file system (a sibling). A reader sees the old directory or the
    new one, never a half-written one; the old one is removed after the swap. If the new one cannot be
    renamed into place, the old one is put back under ``target`` (``staging`` is left as it was) and
    the error is raised.
    """
    staging, target = Path(staging), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if old.exists():  # left by a process with our pid that died mid-swap
            shutil.rmtree(old)
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)  # the old directory back under its name
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    return target


def replace_dir(source: str | Path, target: str | Path, move: bool = False) -> Path:
    """Put a copy of ``source`` (or ``source`` itself, with ``move``) at ``target`` atomically.

    The copy or move goes into a temp sibling of ``target`` first and is then swapped into place
    (:func:`swap_into_place`). If any of that fails, ``target`` is as it was, no temp sibling is left,
    and with ``move`` a ``source`` already moved into the temp sibling is moved back.
    """
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.rmdir()
        if move:
            shutil.move(str(source), staging)
        else:
            shutil.copytree(source, staging)
        return swap_into_place(staging, target)
    except BaseException:
        if move and staging.exists() and not source.exists():
            shutil.move(str(staging), source)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
