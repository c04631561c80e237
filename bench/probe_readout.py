"""Read-out probe: how much of an answer do the image tokens hand the language model?

A diagnostic, not a benchmark of our code. For a few question types whose answer does not depend on
the question text (clock hour, number of shapes, rectangle area, tallest bar), it renders 1200
images, takes the mean of the 16 RMS-normalised image tokens the projector gives the language model
(what uniform attention over the image hands it: no token positions), and fits a logistic regression
on 900 images, scored on 300. Compare with what the base answers for the same types
(``vlthinker model pretrain-base`` prints it per family): a read-out far above the base means the
language model has not learned to read what its image tokens already carry.

    python bench/probe_readout.py                      # the untrained tiny model
    python bench/probe_readout.py .vlthinker/runs/.../base   # and a pretrained base directory
"""

from __future__ import annotations

import argparse
import random
import tempfile

QUESTION_TYPES = ("clock_hour", "count_all", "rect_area", "bar_max_value")


def pooled_tokens(loaded, images):
    import numpy as np

    from vlthinker.model.pretrain import image_tokens

    tokens = image_tokens(loaded.model, loaded.processor, images).numpy()
    tokens = tokens.reshape(len(images), -1, tokens.shape[-1])
    tokens = tokens / np.sqrt((tokens**2).mean(-1, keepdims=True))
    return tokens.mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models", nargs="*", help="model directories (the untrained tiny model is always shown)"
    )
    parser.add_argument("--n", type=int, default=1200, help="images per question type (3/4 fit, 1/4 scored)")
    args = parser.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from vlthinker.model.loader import load_model
    from vlthinker.model.tiny import build_tiny
    from vlthinker.sources import synthetic

    with tempfile.TemporaryDirectory(prefix="vlthinker-readout-") as scratch:
        models = {"untrained": load_model(build_tiny(f"{scratch}/tiny", seed=0), device="cpu")}
        models.update({path: load_model(path, device="cpu") for path in args.models})
        fit = args.n * 3 // 4
        for qtype in QUESTION_TYPES:
            maker = getattr(synthetic, qtype)
            rng = random.Random(5)
            made = [maker(rng, 112) for _ in range(args.n)]
            answers = [q.answer for q in made]
            scores = []
            for name, loaded in models.items():
                features = np.concatenate(
                    [pooled_tokens(loaded, [q.image for q in made[i : i + 64]]) for i in range(0, args.n, 64)]
                )
                features = (features - features[:fit].mean(0)) / (features[:fit].std(0) + 1e-6)
                clf = LogisticRegression(max_iter=300, C=0.1).fit(features[:fit], answers[:fit])
                scores.append(f"{name}: {clf.score(features[fit:], answers[fit:]):.0%}")
            chance = 1 / len(synthetic.ANSWER_SPACES[qtype])
            print(f"{qtype:<15} chance {chance:.0%} | read-out of pooled image tokens: " + ", ".join(scores))


if __name__ == "__main__":
    main()
