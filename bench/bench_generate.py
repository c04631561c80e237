"""Benchmark synthetic dataset generation: items/s at two sizes and how per-item cost scales.

Runs `generate_dataset` for a small and a 10x larger n in one process, into a temporary directory,
and prints items/s for each and the ratio of per-item times (large / small; ~1.0 means linear).

    python bench/bench_generate.py            # 1,000 vs 10,000 items
    python bench/bench_generate.py --quick    # 200 vs 2,000 items (smoke run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vlthinker.sources.generate import generate_dataset


def time_generation(root: Path, n: int, split: str, image_size: int) -> float:
    """Seconds to write one dataset of `n` items (the directory is removed afterwards by the caller)."""
    start = time.perf_counter()
    generate_dataset(root / f"{split}-{n}", n=n, seed=0, split=split, image_size=image_size)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200 vs 2,000 items instead of 1,000 vs 10,000")
    parser.add_argument("--split", default="train", choices=["train", "heldout"])
    parser.add_argument("--image-size", type=int, default=112)
    args = parser.parse_args(argv)
    small, large = (200, 2000) if args.quick else (1000, 10000)

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        time_generation(root, 50, args.split, args.image_size)  # warm imports and caches
        t_small = time_generation(root, small, args.split, args.image_size)
        t_large = time_generation(root, large, args.split, args.image_size)

    per_small, per_large = t_small / small, t_large / large
    print(f"split={args.split} image_size={args.image_size}")
    print(f"n={small:>6}: {t_small:7.2f} s  {small / t_small:8.0f} items/s")
    print(f"n={large:>6}: {t_large:7.2f} s  {large / t_large:8.0f} items/s")
    print(f"per-item time ratio (n={large} / n={small}): {per_large / per_small:.2f}  (1.0 = linear)")


if __name__ == "__main__":
    main()
