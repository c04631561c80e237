"""Contamination guard: no training record may share an image or an item with an evaluation set.

Three matches, each its own rule, each overlap reported item by item:
  * ``contamination_sha256``: the image file bytes are identical (sha256 of the file);
  * ``contamination_phash``: the picture is the same after decoding, re-encoding or resizing: the
    16x16 RGB thumbnails differ by at most `ValidationConfig.phash_max_distance` (0-255) in every
    cell and channel (an identical file is also found here, at distance 0);
  * ``contamination_question_image``: the image matches by either test AND the normalized
    questions are equal: the evaluation item itself leaked.

The perceptual search is exact (no missed pair) and linear in the training size: a cascade of
box-filtered thumbnails (2x2, 4x4, then the full 16x16). The mean of a block moves at most as much
as the largest cell inside it, so a pair within the threshold at 16x16 is within it at every
coarser level; pairs are pruned level by level with vectorised numpy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlthinker.errors import DatasetError
from vlthinker.records import RECORDS_FILE
from vlthinker.validation import images, rows
from vlthinker.validation.config import ValidationConfig
from vlthinker.validation.rules import R_CONTAM_PHASH, R_CONTAM_QI, R_CONTAM_SHA

CASCADE = (2, 4, images.THUMB_SIDE)  # measured fastest of (2,4), (2,8), (4,), (2,4,8), (4,8)
PAIR_BUDGET = 250_000  # train x eval pairs compared per numpy step (~6 MB of int16 at the 2x2 level)


@dataclass(frozen=True)
class EvalItem:
    dataset: str
    id: str
    file_sha256: str
    question_key: str | None


@dataclass
class EvalIndex:
    """Fingerprints of every usable record of the evaluation sets."""

    items: list[EvalItem]
    thumbs: np.ndarray  # (n, 16, 16, 3) uint8, aligned with the items that have one
    thumb_items: list[int]
    skipped: dict[str, int]

    def by_sha(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(self.items):
            out[item.file_sha256].append(index)
        return out


def _stack(thumbs: list[bytes]) -> np.ndarray:
    side = images.THUMB_SIDE
    if not thumbs:
        return np.zeros((0, side, side, 3), dtype=np.uint8)
    return np.frombuffer(b"".join(thumbs), dtype=np.uint8).reshape(len(thumbs), side, side, 3)


def build_index(eval_dirs: list[Path], config: ValidationConfig) -> EvalIndex:
    """Fingerprint the evaluation sets; unusable records are counted, not fatal."""
    items: list[EvalItem] = []
    thumbs: list[bytes] = []
    thumb_items: list[int] = []
    skipped: dict[str, int] = {}
    for directory in eval_dirs:
        if not (directory / RECORDS_FILE).is_file():
            raise DatasetError(f"--against {directory}: no {RECORDS_FILE} (not a dataset directory)")
        bad = 0
        for row in rows.inspect_dataset(directory, "eval", config, fingerprint=True):
            facts, rid = row.facts, row.values.get("id")
            if facts is None or facts.file_sha256 is None or not isinstance(rid, str):
                bad += 1
                continue
            items.append(EvalItem(str(directory), rid, facts.file_sha256, row.question_key))
            if facts.thumbnail is not None:
                thumbs.append(facts.thumbnail)
                thumb_items.append(len(items) - 1)
        skipped[str(directory)] = bad
    return EvalIndex(items, _stack(thumbs), thumb_items, skipped)


def _pool(stack: np.ndarray, side: int) -> np.ndarray:
    """Box-filter (n, 16, 16, 3) thumbnails to (n, side*side*3) block means, rounded to int16."""
    n, full = stack.shape[0], stack.shape[1]
    block = full // side
    means = stack.reshape(n, side, block, side, block, 3).astype(np.float32).mean(axis=(2, 4))
    return np.rint(means).astype(np.int16).reshape(n, side * side * 3)


def perceptual_pairs(train: np.ndarray, evals: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(train index, eval index, L-inf distance) of every pair within `max_distance`; exact.

    Coarse levels compare rounded block means against `max_distance + 1` (rounding moves each side
    by at most 0.5), so no pair within the threshold is ever pruned.
    """
    if len(train) == 0 or len(evals) == 0:
        return []
    levels = [(_pool(train, side), _pool(evals, side)) for side in CASCADE[:-1]]
    full_t = train.reshape(len(train), -1).astype(np.int16)
    full_e = evals.reshape(len(evals), -1).astype(np.int16)
    coarse_t, coarse_e = levels[0]
    chunk = max(1, PAIR_BUDGET // len(evals))
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(train), chunk):
        block = coarse_t[start : start + chunk]
        near = np.abs(block[:, None, :] - coarse_e[None, :, :]).max(axis=2) <= max_distance + 1
        ti, ei = np.nonzero(near)
        ti = ti + start
        for fine_t, fine_e in levels[1:]:
            keep = np.abs(fine_t[ti] - fine_e[ei]).max(axis=1) <= max_distance + 1
            ti, ei = ti[keep], ei[keep]
        if len(ti):
            dist = np.abs(full_t[ti] - full_e[ei]).max(axis=1)
            keep = dist <= max_distance
            out.extend(zip(ti[keep].tolist(), ei[keep].tolist(), dist[keep].tolist(), strict=True))
    return out


@dataclass(frozen=True)
class Overlap:
    """One training record matching one evaluation item."""

    rule: str
    ref: str
    eval_dataset: str
    eval_id: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "record": self.ref,
            "eval_dataset": self.eval_dataset,
            "eval_id": self.eval_id,
            "detail": self.detail,
        }


def _flag(row: rows.Row, found: list[Overlap]) -> None:
    """Write the first overlap of each rule (and how many more) into the row's rule columns."""
    for rule in (R_CONTAM_SHA, R_CONTAM_PHASH, R_CONTAM_QI):
        mine = [o for o in found if o.rule == rule]
        if mine:
            first = mine[0]
            more = f" (and {len(mine) - 1} more)" if len(mine) > 1 else ""
            row.values[rule] = rows.clip(
                f"{first.detail} of eval item {first.eval_id!r} in {first.eval_dataset}{more}"
            )


def find_overlaps(train_rows: list[rows.Row], index: EvalIndex, config: ValidationConfig) -> list[Overlap]:
    """Mark the contamination columns of `train_rows`; return every overlap, item by item."""
    sha_index = index.by_sha()
    found: dict[int, list[Overlap]] = defaultdict(list)  # row position -> its overlaps
    matched: dict[int, dict[int, str]] = defaultdict(dict)  # row position -> eval item -> how
    thumbs: list[bytes] = []
    thumb_rows: list[int] = []
    for position, row in enumerate(train_rows):
        facts = row.facts
        if facts is None or facts.file_sha256 is None:
            continue
        for item in sha_index.get(facts.file_sha256, []):
            detail = f"image bytes (sha256 {facts.file_sha256[:12]}…) equal those"
            found[position].append(_overlap(R_CONTAM_SHA, row, index.items[item], detail))
            matched[position][item] = "identical file"
        if facts.thumbnail is not None:
            thumbs.append(facts.thumbnail)
            thumb_rows.append(position)
    for ti, ei, dist in perceptual_pairs(_stack(thumbs), index.thumbs, config.phash_max_distance):
        position, item = thumb_rows[ti], index.thumb_items[ei]
        detail = f"picture (thumbnail distance {dist}) matches that"
        found[position].append(_overlap(R_CONTAM_PHASH, train_rows[position], index.items[item], detail))
        matched[position].setdefault(item, f"perceptual copy, distance {dist}")
    for position, items in matched.items():
        row = train_rows[position]
        for item, how in items.items():
            target = index.items[item]
            if row.question_key is not None and row.question_key == target.question_key:
                found[position].append(
                    _overlap(R_CONTAM_QI, row, target, f"question and image ({how}) repeat those")
                )
        _flag(row, found[position])
    return [overlap for position in sorted(found) for overlap in found[position]]


def _overlap(rule: str, row: rows.Row, item: EvalItem, detail: str) -> Overlap:
    return Overlap(rule, row.values["ref"], item.dataset, item.id, detail)
