"""Benchmark dataset validation: records/s at two sizes (10x apart) and how per-record cost scales.

Builds synthetic-like datasets fast: a pool of distinct generated images is hard-linked under a new
name for every record (each record still has its own file, read, hashed and decoded), and each
record's question is made unique, so the datasets pass every critical expectation. Both sizes are
validated in one process, with the contamination guard against a generated held-out set, after a
warm-up run that pays Great Expectations' import. Prints records/s for each size and the ratio of
per-record times (large / small; ~1.0 means linear).

    python bench/bench_validate.py            # 10,000 vs 100,000 records
    python bench/bench_validate.py --quick    # 1,000 vs 10,000 records (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from vlthinker.records import RECORDS_FILE, read_records
from vlthinker.sources.generate import generate_dataset
from vlthinker.validation import validate_dataset


def build_dataset(pool: Path, target: Path, n: int) -> Path:
    """`n` records over the pool's images, one hard link (own file name) per record."""
    base = read_records(pool)
    (target / "images").mkdir(parents=True)
    with (target / RECORDS_FILE).open("w", encoding="utf-8") as handle:
        for index in range(n):
            record = base[index % len(base)]
            name = f"images/r{index:07d}.png"
            os.link(pool / record.image, target / name)
            payload = record.model_dump(mode="json", exclude_none=True) | {
                "id": f"bench-{index:07d}",
                "image": name,
                "question": f"{record.question} (item {index})",
            }
            handle.write(json.dumps(payload) + "\n")
    return target


def time_validation(dataset: Path, kind: str, against: list[Path]) -> tuple[float, bool]:
    start = time.perf_counter()
    result = validate_dataset(dataset, kind, against=against)
    return time.perf_counter() - start, result.success


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 vs 10,000 records instead of 10,000 vs 100,000"
    )
    parser.add_argument("--kind", default="captioned", choices=["source", "captioned", "eval"])
    parser.add_argument("--pool", type=int, default=240, help="distinct images to draw records from")
    parser.add_argument(
        "--eval-size", type=int, default=300, help="held-out items to guard against (0: none)"
    )
    args = parser.parse_args(argv)
    small, large = (1_000, 10_000) if args.quick else (10_000, 100_000)

    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        root = Path(tmp)
        pool = generate_dataset(root / "pool", n=args.pool, seed=0, split="train")
        against = (
            [generate_dataset(root / "heldout", n=args.eval_size, seed=0, split="heldout")]
            if args.eval_size
            else []
        )
        build_dataset(pool, root / "warm", 200)
        time_validation(root / "warm", args.kind, against)  # pays the Great Expectations import
        timings = {}
        for n in (small, large):
            dataset = build_dataset(pool, root / f"n{n}", n)
            seconds, ok = time_validation(dataset, args.kind, against)
            if not ok:
                raise SystemExit(f"benchmark dataset of {n} records failed validation (bench bug)")
            timings[n] = seconds

    print(f"kind={args.kind} pool={args.pool} images, contamination guard vs {args.eval_size} held-out items")
    for n, seconds in timings.items():
        print(f"n={n:>7}: {seconds:7.2f} s  {n / seconds:8.0f} records/s")
    ratio = (timings[large] / large) / (timings[small] / small)
    print(f"per-record time ratio (n={large} / n={small}): {ratio:.2f}  (1.0 = linear)")


if __name__ == "__main__":
    main()
