"""Run every benchmark in ``bench/`` and print one line per figure (``make bench``).

Each benchmark runs as its own process; its figure lines (the lines that state a ratio) are printed
prefixed with the benchmark's name, the rest of its output is dropped. A benchmark that fails stops
the whole run with its output. Benchmarks whose full size would take more than a few minutes on a
laptop run with ``--quick`` here; ``--quick`` makes all of them quick.

    python bench/run_all.py            # what `make bench` runs
    python bench/run_all.py --quick    # every benchmark at its quick size
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# (script, arguments at the default size): the full sizes of validate and training take many minutes
BENCHMARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bench_generate.py", ()),
    ("bench_validate.py", ("--quick",)),
    ("bench_training.py", ("--quick",)),
    ("bench_pipeline.py", ()),
)


def figure_lines(output: str) -> list[str]:
    """The lines of a benchmark's output that state a figure (a ratio)."""
    return [line.strip() for line in output.splitlines() if " ratio" in line or line.startswith("ratio")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="every benchmark with --quick")
    args = parser.parse_args(argv)
    found = sorted(p.name for p in BENCH.glob("bench_*.py"))
    known = [name for name, _ in BENCHMARKS]
    missing = sorted(set(found) - set(known))
    if missing:
        sys.exit(f"bench/run_all.py does not know {', '.join(missing)}: add it to BENCHMARKS")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for name, default_args in BENCHMARKS:
        extra = ("--quick",) if args.quick else default_args
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(BENCH / name), *extra], capture_output=True, text=True, env=env
        )
        if result.returncode != 0:
            sys.exit(
                f"{name} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        lines = figure_lines(result.stdout)
        if not lines:
            sys.exit(f"{name} printed no figure (no line with a ratio):\n{result.stdout[-3000:]}")
        label = f"{name.removeprefix('bench_').removesuffix('.py')}{' --quick' if extra else ''}"
        for line in lines:
            print(f"{label}: {line}", flush=True)
        print(f"{label}: (took {time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
