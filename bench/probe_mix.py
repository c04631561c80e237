"""Mixed-question probe: can the tiny VLM learn direct answers to several question types at once?

A diagnostic beside ``probe_perception.py`` (one question type). It trains a fresh tiny model as base
pretraining does (vision tower frozen, projector centred, cosine schedule) on direct ``\\boxed{}``
answers to an even mix of synthetic question types, then scores 60 held-out images per type.

Measured on 2 cores (batch 16, 300 examples-steps per type, i.e. ``--steps 300 x types``):

    types (difficulty-1 reads unless named)                   lr 2e-3                 lr 5e-4
    clock_hour + bar_max_value                                 52%, 90%
    + count_all + table_cell                                   8%, 58%, 95%, 13%
    count_all, spatial_relation, bar_value, rect_area,         22, 42, 17, 12, 5, 8%   100, 42, 38, 90, 32, 82%
      table_cell, clock_hour (1800 steps)

One question type alone learns at lr 2e-3 (clock hour 96% in 600 steps); with six at once nothing
does, while at a quarter of that rate five of the six are read. The tiny language model's read-out of
the image tokens is what a high learning rate breaks when the question types compete.

    python bench/probe_mix.py --types count_all,spatial_relation,bar_value,rect_area,table_cell,clock_hour \
        --steps 1800 --learning-rate 5e-4
"""

from __future__ import annotations

import argparse
import random
import tempfile

from probe_perception import answer_rows, center_projector, fit, make_items

from vlthinker.sources.synthetic import ANSWER_SPACES


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--types",
        required=True,
        help=f"comma-separated question types, of: {', '.join(sorted(ANSWER_SPACES))}",
    )
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps (all types together)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: pretrain.learning_rate")
    parser.add_argument("--test-per-type", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in ANSWER_SPACES]
    if unknown:
        parser.error(f"unknown question type(s) {unknown}; known: {', '.join(sorted(ANSWER_SPACES))}")

    import torch

    from vlthinker.backends.hf import SamplingParams, generate
    from vlthinker.config import load_config
    from vlthinker.model.loader import LoadedModel, load_model
    from vlthinker.model.tiny import build_tiny
    from vlthinker.prompts import direct_question, user_message

    torch.manual_seed(args.seed)
    config = load_config()
    config.pretrain.steps = args.steps
    config.pretrain.batch_size = args.batch_size
    if args.learning_rate:
        config.pretrain.learning_rate = args.learning_rate
    per_type = -(-args.steps * args.batch_size // len(types))
    train = [
        item
        for i, qtype in enumerate(types)
        for item in make_items(per_type, 1000 + 17 * i + args.seed, qtype, 0)
    ]
    random.Random(args.seed).shuffle(train)
    test = [
        (qtype, item)
        for i, qtype in enumerate(types)
        for item in make_items(args.test_per_type, 2000 + 17 * i + args.seed, qtype, 0)
    ]
    rows = answer_rows(train)
    with tempfile.TemporaryDirectory(prefix="vlthinker-probe-mix-") as scratch:
        model_dir = build_tiny(f"{scratch}/model", seed=args.seed, spec=config.model.tiny, image_size=112)
        loaded = load_model(model_dir, device="cpu")
        center_projector(loaded.model, loaded.processor, args.seed)
        model, seconds = fit(loaded, config, rows, f"{scratch}/run", freeze_vision=True)
        outputs = generate(
            LoadedModel(model=model, processor=loaded.processor, ref=str(model_dir)),
            [user_message(direct_question(q)) for _, (_, q, _, _) in test],
            [image for _, (image, _, _, _) in test],
            SamplingParams(max_new_tokens=8),
            batch_size=32,
        )
    hits: dict[str, list[bool]] = {t: [] for t in types}
    for (qtype, (_, _, answer, _)), out in zip(test, outputs, strict=True):
        hits[qtype].append(f"\\boxed{{{answer}}}" in out[0])
    print(
        f"{len(types)} question types, {args.steps} steps of {args.batch_size} "
        f"(lr {config.pretrain.learning_rate:g}) in {seconds:.0f}s"
    )
    for qtype in types:
        accuracy = sum(hits[qtype]) / len(hits[qtype])
        print(f"  {qtype:26s} {accuracy:6.1%}   chance {1 / len(ANSWER_SPACES[qtype]):6.1%}")


if __name__ == "__main__":
    main()
