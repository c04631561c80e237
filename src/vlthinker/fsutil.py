"""Atomic directory replacement: the one way every step puts a finished directory at its final name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def swap_into_place(staging: str | Path, target: str | Path) -> Path:
    """Rename the complete ``staging`` directory to ``target``, replacing any old ``target``.

    ``staging`` must be on the same file system (a sibling). A reader sees the old directory or the
    new one, never a half-written one; the old one is removed after the swap.
    """
    staging, target = Path(staging), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    return target
