"""Perception probe: can the tiny VLM learn one visual attribute of a single shape, and how fast?

A diagnostic, not a benchmark of our code: it isolates why the tiny base model stays near chance on
most task families. Each probe trains a fresh tiny model (the pretraining trainer settings) on one
question about one shape drawn in a random cell of the 4x4 grid, then scores 100 held-out images:

    colour   "What colour is the shape?"       content: the shape's own pixels     chance 20%
    shape    "What shape is it?"                content                             chance 33%
    row      "Which row is the shape in?"       absolute position                   chance 25%
    column   "Which column is the shape in?"    absolute position                   chance 25%

Variants: ``--center`` subtracts the projector's mean output (measured on 64 synthetic images) from
its bias, so image tokens differ in more than a shared direction (at init that shared direction is
~98% of a token's norm); ``--tint A`` shades the white background by A grey levels per 14-px patch
step (red channel by column, blue by row), an absolute position cue drawn into the pixels;
``--freeze-vision`` trains the language model only. ``--probe`` also takes any question type of the
synthetic families (e.g. ``clock_hour``: 600 steps at chance as pretraining trains, 40% frozen, 96%
frozen and centred; all measured at lr 2e-3, pretraining's rate then: pass ``--learning-rate 2e-3``).

Also prints a linear probe on the vision tower before training: can a logistic regression read the
attribute from the shape's own token? (It reads colour perfectly; row only with a tint: Qwen2.5-VL's
vision tower has rotary position only, so on a plain background the token holds no absolute position.)

    python bench/probe_perception.py --probe colour --steps 200
    python bench/probe_perception.py --probe row --steps 600 --tint 12
    # a curriculum: colour first (teaches attention to the shape's token), then the row
    python bench/probe_perception.py --probe colour --steps 600 --tint 40 --tint-cell 28 --save /tmp/colour
    python bench/probe_perception.py --probe row --steps 400 --tint 40 --tint-cell 28 --init /tmp/colour
    python bench/probe_perception.py --probe clock_hour --steps 600 --freeze-vision --center
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from vlthinker.sources.synthetic import ANSWER_SPACES as QUESTION_TYPES

PROBES = {
    "colour": ("What colour is the shape?", 5),
    "shape": ("What shape is it?", 3),
    "row": ("Which row is the shape in?", 4),
    "column": ("Which column is the shape in?", 4),
}


def tinted(image, amplitude: float, cell: int = 14):
    """The image with its white background shaded by cell row (blue) and cell column (red)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image).astype(np.int16).copy()
    height, width, _ = pixels.shape
    rows = (np.arange(height) // cell)[:, None]
    cols = (np.arange(width) // cell)[None, :]
    white = (pixels >= 245).all(-1)
    pixels[..., 0] = np.where(white, 255 - amplitude * cols, pixels[..., 0])
    pixels[..., 2] = np.where(white, 255 - amplitude * rows, pixels[..., 2])
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_items(n: int, seed: int, probe: str, tint: float, cell: int = 14):
    """(image, question, answer) triples: one shape in a random cell, or a synthetic question type."""
    from vlthinker.sources import synthetic

    if probe not in PROBES:  # a question type of the synthetic families, e.g. clock_hour
        maker = getattr(synthetic, probe)
        rng = random.Random(seed)
        made = [maker(rng, 112) for _ in range(n)]
        return [(tinted(q.image, tint, cell) if tint else q.image, q.question, q.answer, None) for q in made]
    from vlthinker.sources.draw import COLOR_NAMES, SHAPES, draw_cell_shape, new_canvas

    rng = random.Random(seed)
    items = []
    for _ in range(n):
        image, draw = new_canvas(112)
        colour, shape = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
        row, col = rng.randrange(4), rng.randrange(4)
        draw_cell_shape(draw, shape, colour, row, col, 112)
        if tint:
            image = tinted(image, tint, cell)
        answer = {"colour": colour, "shape": shape, "row": str(row + 1), "column": str(col + 1)}[probe]
        items.append((image, PROBES[probe][0], answer, (colour, shape, row, col)))
    return items


def vision_tokens(model, processor, image):
    from vlthinker.model.pretrain import image_tokens

    return image_tokens(model, processor, [image])


def center_projector(model, processor, seed: int) -> float:
    """Centre the projector on 64 synthetic images (as base pretraining does); return the share removed."""
    import io

    from PIL import Image

    from vlthinker.model import pretrain
    from vlthinker.sources.generate import ALL_TASKS, generate_items

    images = [
        Image.open(io.BytesIO(png)).convert("RGB")
        for _, png in generate_items(pretrain.CENTERING_IMAGES, seed=seed, split="train", tasks=ALL_TASKS)
    ]
    return pretrain.center_projector(model, processor, images)


def linear_probe(model, processor, probe: str, tint: float, cell: int) -> float:
    """Held-out accuracy of a logistic regression reading the attribute from the shape's token."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    items = make_items(500, 7, probe, tint, cell)
    features, labels = [], []
    for image, _, answer, _ in items:
        tokens = vision_tokens(model, processor, image).numpy()
        median = np.median(tokens, axis=0, keepdims=True)
        features.append(tokens[np.linalg.norm(tokens - median, axis=-1).argmax()])
        labels.append(answer)
    clf = LogisticRegression(max_iter=2000).fit(features[:350], labels[:350])
    return float(clf.score(features[350:], labels[350:]))


def answer_rows(items) -> list[dict]:
    """Direct-answer training rows (question -> \\boxed{answer}) for (image, question, answer, _) items."""
    from vlthinker.prompts import assistant_message, direct_question, user_message

    return [
        {
            "prompt": user_message(direct_question(q)),
            "completion": assistant_message(f"\\boxed{{{a}}}"),
            "images": [image],
        }
        for image, q, a, _ in items
    ]


def fit(loaded, config, rows: list[dict], run_dir: str, freeze_vision: bool):
    """Train ``loaded.model`` on ``rows`` with the pretraining trainer settings: (eval model, seconds)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from vlthinker.model.pretrain import _trainer_args

    if freeze_vision:
        for param in loaded.model.model.visual.parameters():
            param.requires_grad_(False)
    loaded.model.train()
    trainer = SFTTrainer(
        model=loaded.model,
        args=_trainer_args(config, run_dir, "cpu"),
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.processor,
    )
    started = time.monotonic()
    trainer.train()
    return trainer.model.eval(), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--probe",
        choices=sorted(PROBES) + sorted(QUESTION_TYPES),
        default="colour",
        help="a single-shape probe, or a question type of the synthetic families (e.g. clock_hour)",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: pretrain.learning_rate")
    parser.add_argument("--center", action="store_true", help="centre the projector output at init")
    parser.add_argument(
        "--freeze-vision",
        action="store_true",
        help="train the language model only (tower + projector frozen)",
    )
    parser.add_argument("--tint", type=float, default=0.0, help="background shading per patch step")
    parser.add_argument(
        "--tint-cell", type=int, default=14, help="pixels per tint step (14: a patch, 28: a token)"
    )
    parser.add_argument(
        "--init", default=None, help="start from this model directory (e.g. an earlier --save)"
    )
    parser.add_argument("--save", default=None, help="write the trained model here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from vlthinker.backends.hf import SamplingParams, generate
    from vlthinker.config import load_config
    from vlthinker.model.loader import LoadedModel, load_model, save_model
    from vlthinker.model.tiny import build_tiny
    from vlthinker.prompts import direct_question, user_message

    torch.manual_seed(args.seed)
    config = load_config()
    config.pretrain.steps = args.steps
    if args.learning_rate:
        config.pretrain.learning_rate = args.learning_rate
    cell = args.tint_cell
    train = make_items(args.steps * config.pretrain.batch_size, 1000 + args.seed, args.probe, args.tint, cell)
    test = make_items(100, 2000 + args.seed, args.probe, args.tint, cell)
    rows = answer_rows(train)
    with tempfile.TemporaryDirectory(prefix="vlthinker-probe-") as scratch:
        model_dir = args.init or build_tiny(f"{scratch}/model", seed=args.seed)
        loaded = load_model(model_dir, device="cpu")
        shared = center_projector(loaded.model, loaded.processor, args.seed) if args.center else None
        linear = (
            linear_probe(loaded.model, loaded.processor, args.probe, args.tint, cell)
            if args.probe in PROBES
            else None
        )
        model, seconds = fit(loaded, config, rows, f"{scratch}/run", args.freeze_vision)
        if args.save:
            save_model(model, loaded.processor, args.save)
        outputs = generate(
            LoadedModel(model=model, processor=loaded.processor, ref=str(model_dir)),
            [user_message(direct_question(q)) for _, q, _, _ in test],
            [image for image, _, _, _ in test],
            SamplingParams(max_new_tokens=8),
            batch_size=32,
        )
    accuracy = sum(
        f"\\boxed{{{a}}}" in out[0] for (_, _, a, _), out in zip(test, outputs, strict=True)
    ) / len(test)
    chance = 1 / (PROBES[args.probe][1] if args.probe in PROBES else len(QUESTION_TYPES[args.probe]))
    variant = (
        ", ".join(
            part
            for part in (
                f"projector centred (shared direction {shared:.0%} of token norm)"
                if shared is not None
                else "",
                f"tint {args.tint:g}" if args.tint else "",
                "vision frozen" if args.freeze_vision else "",
            )
            if part
        )
        or "plain"
    )
    print(f"probe {args.probe} ({variant}): {args.steps} steps in {seconds:.0f}s")
    if linear is not None:
        print(f"linear probe on the vision tower before training: {linear:.0%}")
    print(f"held-out accuracy {accuracy:.0%}, chance {chance:.0%}: ratio to chance {accuracy / chance:.2f}")


if __name__ == "__main__":
    main()
