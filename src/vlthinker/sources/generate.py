"""Generate synthetic datasets: deterministic, split-disjoint by image hash, duplicate-free.

Item `i` of a run goes to task `tasks[i % len(tasks)]`; the k-th item of a task gets difficulty
`k % max_difficulty + 1`, so tasks and difficulties are spread evenly and independently. Each item is
drawn from its own `random.Random(f"{seed}:{task}:{k}:{attempt}")`, so the same arguments give
byte-identical records and PNGs on any machine with the same Pillow.

Train/heldout disjointness holds by construction: every candidate image is assigned to a split by its
PNG sha256 (`split_of_sha`), or by its scene key where the family gives one (`split_of_item`: clocks,
whose renderings differ only by a pixel or two of jitter and would otherwise be near-duplicates across
splits), and a candidate that belongs to the other split is redrawn (next `attempt`). The same image
bytes can therefore never appear in both splits, whatever the seeds.
`check_disjoint` verifies it afterwards on the files themselves (file hash and decoded pixels).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

from vlthinker.errors import DatasetError
from vlthinker.records import IMAGES_DIR, DatasetWriter, Record, read_records, sha256_bytes
from vlthinker.sources import draw
from vlthinker.sources.synthetic import ANSWER_SPACES, FAMILIES, Family, Item

SOURCE = "synthetic"
SPLITS = ("train", "heldout")
HELDOUT_MODULUS = 5  # one image hash in five belongs to the held-out split
MAX_ATTEMPTS = 500

TASKS: dict[str, Family] = dict(FAMILIES)
ALL_TASKS: list[str] = list(TASKS)

Progress = Callable[[int, int], None]


def split_of_sha(sha256: str) -> str:
    """The split an image belongs to, decided by its content hash alone."""
    return "heldout" if int(sha256[:8], 16) % HELDOUT_MODULUS == 0 else "train"


def split_of_item(item, sha256: str) -> str:
    """The split of a candidate: by its scene key where the family gives one, else by its image hash.

    A scene key names a scene up to rendering jitter (e.g. a clock's hour and colours), so renderings
    that the contamination guard would call near-duplicates never land in different splits. The key
    is a function of the image content, so equal images still always share a split.
    """
    if item.scene_key is None:
        return split_of_sha(sha256)
    return split_of_sha(sha256_bytes(item.scene_key.encode()))


def normalize_question(question: str) -> str:
    """Lower case, single spaces, no trailing punctuation: the key for duplicate questions."""
    return re.sub(r"\s+", " ", question.strip().lower()).rstrip(" ?.!")


def chance_accuracy(question_type: str) -> float:
    """Accuracy of guessing uniformly over the answer space of `question_type`."""
    if question_type not in ANSWER_SPACES:
        known = ", ".join(sorted(ANSWER_SPACES))
        raise ValueError(f"unknown question type {question_type!r}; known: {known}")
    return 1.0 / len(ANSWER_SPACES[question_type])


def resolve_tasks(tasks: list[str] | None) -> list[str]:
    """Validate task names (None = all, in registry order)."""
    if tasks is None:
        return list(ALL_TASKS)
    names = list(tasks)
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        what = f"unknown task(s) {', '.join(map(repr, unknown))}" if unknown else "no tasks given"
        raise ValueError(f"{what}; known tasks: {', '.join(ALL_TASKS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"task list has duplicates: {names}")
    return names


def _check_args(n: int, split: str, image_size: int, max_difficulty: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if image_size < 56 or image_size % 56 != 0:
        raise ValueError(
            f"image_size must be a positive multiple of 56 (4 token blocks, 8 units), e.g. 112 or 224;"
            f" got {image_size}"
        )
    if not 1 <= max_difficulty <= 3:
        raise ValueError(f"max_difficulty must be 1, 2 or 3, got {max_difficulty}")


def item_id(task: str, split: str, seed: int, index: int) -> str:
    return f"syn-{task}-{split}-s{seed}-{index:07d}"


def _draw_item(
    family: Family,
    seed: int,
    k: int,
    difficulty: int,
    split: str,
    image_size: int,
    seen: set[tuple[str, str]],
) -> tuple[Item, bytes, str, int]:
    """First candidate of (task, k) that belongs to `split` and is new: (item, png, sha, attempts)."""
    for attempt in range(MAX_ATTEMPTS):
        rng = random.Random(f"{seed}:{family.name}:{k}:{attempt}")
        item = family.make(rng, difficulty, image_size)
        png = draw.encode_png(item.image)
        sha = sha256_bytes(png)
        key = (sha, normalize_question(item.question))
        if split_of_item(item, sha) == split and key not in seen:
            seen.add(key)
            return item, png, sha, attempt + 1
    raise DatasetError(
        f"task {family.name!r}: no new {split} item after {MAX_ATTEMPTS} candidates (item {k}, difficulty"
        f" {difficulty}); the task's space of distinct images/questions is exhausted for this n"
    )


def generate_items(
    n: int,
    seed: int,
    split: str,
    tasks: list[str] | None = None,
    image_size: int = 112,
    max_difficulty: int = 3,
    progress: Progress | None = None,
) -> Iterator[tuple[Record, bytes]]:
    """Yield `n` (record, PNG bytes) pairs, round robin over tasks and cycling difficulties."""
    names = resolve_tasks(tasks)
    _check_args(n, split, image_size, max_difficulty)
    seen: set[tuple[str, str]] = set()
    for index in range(n):
        task = names[index % len(names)]
        k = index // len(names)
        difficulty = k % max_difficulty + 1
        item, png, sha, _ = _draw_item(TASKS[task], seed, k, difficulty, split, image_size, seen)
        rid = item_id(task, split, seed, index)
        record = Record(
            id=rid,
            source=SOURCE,
            task=task,
            image=f"{IMAGES_DIR}/{rid}.png",
            image_sha256=sha,
            question=item.question,
            answer=item.answer,
            caption=item.caption,
            caption_exact=True,
            difficulty=item.difficulty,
            split=split,
            question_type=item.question_type,
        )
        yield record, png
        if progress is not None:
            progress(index + 1, n)


class _Stats:
    """Counts per task, difficulty, question type and answer, collected while items stream by."""

    def __init__(self) -> None:
        self.tasks: Counter[str] = Counter()
        self.difficulties: Counter[int] = Counter()
        self.answers: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, record: Record) -> None:
        self.tasks[record.task] += 1
        self.difficulties[record.difficulty or 0] += 1
        self.answers[record.question_type][record.answer] += 1  # type: ignore[attr-defined]

    def to_dict(self, args: dict) -> dict:
        return {
            "source": SOURCE,
            "arguments": args,
            "count": sum(self.tasks.values()),
            "per_task": dict(self.tasks),
            "per_difficulty": {str(d): c for d, c in sorted(self.difficulties.items())},
            "per_question_type": {q: sum(c.values()) for q, c in self.answers.items()},
            "answers_per_question_type": {q: dict(c) for q, c in self.answers.items()},
            "chance_accuracy_per_question_type": {q: chance_accuracy(q) for q in self.answers},
        }


def generate_dataset(
    output_dir: str | Path,
    n: int,
    seed: int,
    split: str,
    tasks: list[str] | None = None,
    image_size: int = 112,
    max_difficulty: int = 3,
    progress: Progress | None = None,
) -> Path:
    """Write a dataset directory atomically (records.jsonl, images/, stats.json); return its path.

    stats.json holds only deterministic content (no timestamps) so the directory's DVC hash is a
    function of the arguments.
    """
    names = resolve_tasks(tasks)
    _check_args(n, split, image_size, max_difficulty)
    args = {
        "n": n,
        "seed": seed,
        "split": split,
        "tasks": names,
        "image_size": image_size,
        "max_difficulty": max_difficulty,
    }
    stats = _Stats()
    with DatasetWriter(output_dir) as writer:
        for record, png in generate_items(n, seed, split, names, image_size, max_difficulty, progress):
            writer.add_image(record.image, png)
            writer.add(record)
            stats.add(record)
        writer.write_stats(stats.to_dict(args))
    return Path(output_dir)


# --------------------------------------------------------------------------------------------------
# Disjointness check


def pixel_sha256(path: Path) -> str:
    """Hash of the decoded pixels (mode, size, RGB bytes): equal pictures in different encodings match."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        header = f"RGB:{rgb.width}x{rgb.height}:".encode()
        return hashlib.sha256(header + rgb.tobytes()).hexdigest()


def _fingerprints(dataset_dir: Path) -> dict[str, dict[str, list[str]]]:
    """Per kind of key, key -> ids. Kinds: file hash, pixel hash, (pixel hash, question)."""
    keys: dict[str, dict[str, list[str]]] = {"file": defaultdict(list), "pixels": defaultdict(list)}
    keys["question+image"] = defaultdict(list)
    for record in read_records(dataset_dir):
        path = dataset_dir / record.image
        if not path.is_file():
            raise DatasetError(f"{dataset_dir}: record {record.id!r}: image {record.image!r} is missing")
        file_sha = sha256_bytes(path.read_bytes())
        pixels = pixel_sha256(path)
        keys["file"][file_sha].append(record.id)
        keys["pixels"][pixels].append(record.id)
        keys["question+image"][f"{pixels}|{normalize_question(record.question)}"].append(record.id)
    return keys


def check_disjoint(train_dir: str | Path, heldout_dir: str | Path, show: int = 10) -> dict[str, int]:
    """Raise DatasetError naming overlapping ids if any image (file or pixels) or question+image is shared.

    Returns the item counts {"train": ..., "heldout": ...} when the two datasets are disjoint.
    """
    train, heldout = _fingerprints(Path(train_dir)), _fingerprints(Path(heldout_dir))
    problems: list[str] = []
    for kind in ("file", "pixels", "question+image"):
        shared = sorted(set(train[kind]) & set(heldout[kind]))
        for key in shared[:show]:
            problems.append(f"{kind} {key[:16]}…: train {train[kind][key]} / heldout {heldout[kind][key]}")
        if len(shared) > show:
            problems.append(f"{kind}: … and {len(shared) - show} more")
    if problems:
        raise DatasetError(f"{train_dir} and {heldout_dir} overlap:\n  " + "\n  ".join(problems))
    return {
        "train": sum(len(v) for v in train["file"].values()),
        "heldout": sum(len(v) for v in heldout["file"].values()),
    }
