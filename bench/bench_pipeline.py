"""Benchmark the pipeline as a whole: orchestration overhead, cached re-run, data-step scaling.

Three figures, each a ratio of two timings taken in this one run:

1. orchestration overhead = a full local smoke run's wall time (``vlthinker run --config
   recipes/smoke.yaml`` in a fresh state directory, measured around the command) / the sum of its
   steps' own compute time (each component times its own body: ``run-<time>.timings.json`` beside
   the run's log, see ``pipelines/timings.py``); 1.0 = no overhead;
2. cached re-run = the same command again on the same state directory (every step from kfp.local's
   cache) / the first run;
3. data-step scaling = per-item time of the iteration-1 data steps (sources, caption, distill with the
   offline teacher, validation of the three datasets, each pushed to a DVC remote as the components
   do) at 10x the items / at 1x, driven through the task functions the components call; 1.0 = linear.

    python bench/bench_pipeline.py            # smoke run (2 iterations), data steps 1,000 vs 10,000 items
    python bench/bench_pipeline.py --quick    # 1 iteration with short SFT, data steps 200 vs 2,000 items
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "recipes" / "smoke.yaml"
QUICK_OVERRIDES = ("pipeline.iterations=1", "sft.max_steps=30")


def timed_run(state: Path, overrides: tuple[str, ...]) -> float:
    """Seconds of one ``vlthinker run`` (a failure stops the benchmark with the run's output)."""
    sets = [arg for override in overrides for arg in ("--set", override)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlthinker.cli",
            "run",
            "--config",
            str(SMOKE),
            "--state-dir",
            str(state),
            *sets,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"vlthinker run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def steps_seconds(state: Path) -> tuple[float, int]:
    """The first run's steps' own compute (seconds) and how many steps ran, from its timings file."""
    from pipelines.timings import read_timings

    logs = sorted((state / "logs").glob("run-*.log"))
    if not logs:
        sys.exit(f"no run log in {state / 'logs'}")
    summary = read_timings(logs[0])
    return summary["steps_seconds"], summary["steps_run"]


def data_steps(root: Path, n: int) -> float:
    """Seconds of the iteration-1 data steps for ``n`` training items (n/10 held-out items).

    A failing validation stops the benchmark with its report (the synthetic train and held-out sets
    are near-duplicate-free at 10k items since clocks are split by scene).
    """
    from vlthinker.config import load_config
    from vlthinker.tasks.data import caption, distill, make_sources, publish, validate

    config = load_config(None, {"data.n_train": n, "data.n_heldout": max(20, n // 10)})
    remote = str(root / "dvc-remote")
    train, heldout = root / f"train-{n}", root / f"heldout-{n}"
    captioned, sft = root / f"captioned-{n}", root / f"sft-{n}"
    started = time.perf_counter()
    make_sources(config, str(train), str(heldout))
    publish(str(train), remote)
    publish(str(heldout), remote)
    validate(config, str(train), "source", [str(heldout)])
    # synthetic items carry exact captions: the caption step keeps them and loads no model
    caption(config, str(train), str(root / "no-model"), str(captioned))
    publish(str(captioned), remote)
    validate(config, str(captioned), "captioned", [str(heldout)])
    distill(config, str(captioned), str(sft))
    publish(str(sft), remote)
    validate(config, str(sft), "sft", [str(heldout)])
    return time.perf_counter() - started


def quiet(fn, *args):
    """Run ``fn`` with its progress prints (to stdout) silenced; our figures stay readable."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 iteration, SFT 30 steps; data steps 200 vs 2,000 items"
    )
    parser.add_argument("--skip-run", action="store_true", help="only the data-step scaling figure")
    args = parser.parse_args(argv)
    overrides = QUICK_OVERRIDES if args.quick else ()
    small, large = (200, 2000) if args.quick else (1000, 10000)

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        if not args.skip_run:
            state = root / "state"
            first = timed_run(state, overrides)
            own, steps = steps_seconds(state)
            cached = timed_run(state, overrides)
            label = "quick smoke run" if args.quick else "smoke run"
            print(
                f"orchestration overhead ratio (wall / steps' own compute): {first / own:.2f}  ({label} "
                f"{first:.1f} s / {own:.1f} s over its {steps} steps; 1.0 = no overhead)"
            )
            print(
                f"cached re-run ratio (re-run / first run): {cached / first:.3f}  ({cached:.1f} s / {first:.1f} s)"
            )
        quiet(data_steps, root / "warm", 20)  # imports (Great Expectations, DVC) and caches
        t_small = quiet(data_steps, root / "small", small)
        t_large = quiet(data_steps, root / "large", large)
    ratio = (t_large / large) / (t_small / small)
    print(
        f"data steps per-item time ratio (n={large} / n={small}): {ratio:.2f}  (1.0 = linear; "
        f"{t_small:.1f} s and {t_large:.1f} s)"
    )


if __name__ == "__main__":
    main()
