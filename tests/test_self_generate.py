"""Self-generation: a VLM answers from the image, k samples, only verified traces are written."""

from __future__ import annotations

import pytest

from vlthinker.answers import extract_answer, format_ok, grade
from vlthinker.config import load_config
from vlthinker.records import read_records
from vlthinker.sources.generate import generate_dataset
from vlthinker.steps.self_generate import self_generate


@pytest.fixture(scope="module")
def yes_no_dir(tmp_path_factory):
    """Spatial difficulty-1 questions: yes/no, so a format-trained model is right about half the time."""
    return generate_dataset(
        tmp_path_factory.mktemp("selfgen") / "source",
        n=10,
        seed=9,
        split="train",
        tasks=["spatial"],
        max_difficulty=1,
    )


@pytest.fixture(scope="module")
def format_model_dir(tiny_model_dir, yes_no_dir, tmp_path_factory):
    """The tiny model after a few SFT steps on short <think>/<answer> traces with random yes/no answers."""
    import random

    from datasets import Dataset
    from PIL import Image
    from trl import SFTConfig, SFTTrainer

    from vlthinker.model.loader import load_model, save_model
    from vlthinker.prompts import assistant_message, reasoning_question, user_message

    rng = random.Random(0)
    image = Image.new("RGB", (112, 112), "white")
    rows = []
    for record in read_records(yes_no_dir) * 8:
        answer = rng.choice(["yes", "no"])
        rows.append(
            {
                "prompt": user_message(reasoning_question(record.question)),
                "completion": assistant_message(
                    f"<think>I compare the rows.</think><answer>{answer}</answer>"
                ),
                "images": [image],
            }
        )
    loaded = load_model(tiny_model_dir, device="cpu")
    out = tmp_path_factory.mktemp("format_model")
    args = SFTConfig(
        output_dir=str(out / "scratch"),
        per_device_train_batch_size=8,
        max_steps=40,
        learning_rate=3e-3,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=False,
        max_length=None,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.processor,
    )
    trainer.train()
    return save_model(trainer.model, loaded.processor, out / "model")


def test_self_generation_writes_only_verified_traces(format_model_dir, yes_no_dir, tmp_path):
    config = load_config(
        None,
        {
            "self_generate.k": 4,
            "self_generate.sampling.max_new_tokens": 24,
            "self_generate.sampling.temperature": 1.0,
            "self_generate.sampling.seed": 0,
        },
    )
    stats = self_generate(config, format_model_dir, yes_no_dir, tmp_path / "sft", log=print)
    records = read_records(tmp_path / "sft")
    assert stats["chains"]["total"] == 40
    assert stats["chains"]["dropped"]["wrong_answer"] > 0, "a guessing model gets some wrong"
    assert len(records) == stats["items"]["kept"] > 0
    for record in records:
        completion = record.completion[0]["content"][0]["text"]
        assert format_ok(completion)
        assert grade(extract_answer(completion), record.answer)
        assert record.trace_origin.startswith("self:")
