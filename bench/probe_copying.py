"""Copying probe: does a model's chain restate the colour the question names?

A diagnostic, not a benchmark of our code. For each held-out record whose question names a colour,
it takes the offline teacher's clean focused solution, cuts it just before that colour's first
mention (the restatement: "<think>Okay, so the question asks for the value of the"), feeds the
image, the reasoning prompt and this prefix to the model (teacher forcing), and checks whether the
most likely next token is the question's colour. Each colour is one token of the tiny tokenizer, so
a model that copies from its prompt gets nearly all of them; one that does not gets about what
guessing the most common colour gives. ``--with-caption`` also shows the exact caption in the
prompt, as the text-reasoning examples of base pretraining do.

    python bench/probe_copying.py --heldout STATE/pipeline/RUN/make-sources/heldout \\
        --model STATE/pipeline/RUN/base-model/model --model STATE/pipeline/RUN/sft/model

Measured (Dec 2026, 117 items of the default held-out set): default base 29, its SFT model 35;
after a 300-step restatement warm-up (``pretrain.restate_warmup_steps``) 100 (README).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")


def probes(records: list, teacher) -> list[tuple[object, str, str]]:
    """(record, chain prefix up to the colour, colour) for each record whose question names a colour
    and whose teacher solution repeats it."""
    from vlthinker.model.pretrain import verified_solution

    out = []
    for record in records:
        named = [word for word in re.findall(r"[a-z]+", record.question.lower()) if word in COLOURS]
        if not named:
            continue
        solution = verified_solution(record, teacher)
        found = re.search(rf"\b{named[0]}\b", solution)
        if found:
            out.append((record, solution[: found.start()].rstrip(" "), named[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heldout", required=True, type=Path, help="dataset dir: records.jsonl + images/")
    parser.add_argument("--model", required=True, action="append", type=Path, help="model dir (repeatable)")
    parser.add_argument(
        "--with-caption", action="store_true", help="show the exact caption in the prompt too"
    )
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from vlthinker.model.loader import load_model
    from vlthinker.model.pretrain import clean_teacher
    from vlthinker.prompts import reasoning_question, user_message
    from vlthinker.records import Record

    records_file = args.heldout / "records.jsonl"
    if not records_file.is_file():
        parser.error(f"{records_file}: no such file (--heldout must be a dataset directory)")
    records = [Record.model_validate(json.loads(line)) for line in records_file.read_text().splitlines()]
    items = probes(records, clean_teacher(0, "focused"))
    print(f"{len(items)} of {len(records)} held-out questions name a colour")
    for model_dir in args.model:
        loaded = load_model(str(model_dir), device="cpu")
        loaded.model.eval()
        right, total = Counter(), Counter()
        for record, prefix, colour in items:
            question = reasoning_question(record.question)
            if args.with_caption:
                question = f"Image description: {record.caption}\n\n{question}"
            text = loaded.processor.apply_chat_template(user_message(question), add_generation_prompt=True)
            image = Image.open(args.heldout / record.image).convert("RGB")
            batch = loaded.processor(images=[image], text=[text + prefix], return_tensors="pt")
            with torch.no_grad():
                token = int(loaded.model(**batch).logits[0, -1].argmax())
            right[record.task] += loaded.processor.tokenizer.decode([token]).strip() == colour
            total[record.task] += 1
        by_task = ", ".join(f"{task} {right[task]}/{total[task]}" for task in sorted(total))
        print(f"{model_dir}: copies the colour {sum(right.values())}/{sum(total.values())} ({by_task})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
