"""Base pretraining: report, content cache (config + seed), corrupted cache entry detected and rebuilt."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from vlthinker.config import load_config
from vlthinker.errors import ConfigError
from vlthinker.model.pretrain import (
    REPORT_FILE,
    build_training_rows,
    cache_key,
    format_report,
    pretrain_base,
    synthetic_items,
)
from vlthinker.prompts import CAPTION_PROMPT

SMALL = {
    "pretrain.steps": 4,
    "pretrain.batch_size": 5,  # one row of each of the five kinds
    "pretrain.n_train": 16,
    "pretrain.n_heldout": 12,
    "pretrain.log_every": 2,
    "pretrain.max_new_tokens": 6,
}


def test_pretrain_reports_and_caches_by_content(tmp_path, capsys, caplog):
    config = load_config(None, SMALL)
    logs: list[str] = []
    with caplog.at_level(logging.INFO):
        report, cached = pretrain_base(
            config, tmp_path / "base", cache_dir=tmp_path / "cache", log=logs.append
        )
    assert not cached
    # one progress line per log event (ours), not the Trainer's raw dicts or accelerate's eval notices
    assert "{'loss'" not in capsys.readouterr().out
    assert not [r for r in caplog.records if "had no length" in r.getMessage()]
    assert report.steps == 4 and report.n_heldout_items == 12
    assert set(report.per_task) == set(config.data.tasks)
    assert 0.0 <= report.heldout_accuracy <= 1.0 and report.caption_loss > 0
    assert any("step 4/4" in line for line in logs), "progress is printed"
    on_disk = json.loads((tmp_path / "base" / REPORT_FILE).read_text())
    assert on_disk["cache_key"] == cache_key(config)
    assert "families clearly above chance" in format_report(report)
    assert 0.0 <= report.arithmetic_accuracy <= 1.0 and "arithmetic drills" in format_report(report)

    again, cached = pretrain_base(
        config, tmp_path / "elsewhere", cache_dir=tmp_path / "cache", log=logs.append
    )
    assert cached and again.model_sha256 == report.model_sha256
    assert (tmp_path / "elsewhere" / "model.safetensors").read_bytes() == (
        tmp_path / "base" / "model.safetensors"
    ).read_bytes()

    # a corrupted cache entry is detected by its hash and rebuilt, not served
    entry = tmp_path / "cache" / "base" / cache_key(config)
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    (tmp_path / "elsewhere").rename(tmp_path / "moved")  # no complete copy at the output either
    rebuilt, cached = pretrain_base(
        config, tmp_path / "elsewhere", cache_dir=tmp_path / "cache", log=logs.append
    )
    assert not cached
    assert any("corrupted" in line for line in logs)
    assert rebuilt.model_sha256 == report.model_sha256, "same config + seed, same weights"


def test_cache_key_follows_config_and_seed():
    base = load_config(None, SMALL)
    assert cache_key(base) == cache_key(load_config(None, SMALL))
    assert cache_key(base) != cache_key(load_config(None, {**SMALL, "model.seed": 1}))
    assert cache_key(base) != cache_key(load_config(None, {**SMALL, "pretrain.steps": 5}))
    assert cache_key(base) != cache_key(load_config(None, {**SMALL, "pretrain.batching": "mixed"}))
    assert cache_key(base) == cache_key(load_config(None, {**SMALL, "distill.k": 2})), "unrelated sections"


def _kind(row: dict) -> str:
    text = row["prompt"][0]["content"][-1]["text"]
    if text.startswith("Image description: "):
        return "reasoning"
    return "caption" if text == CAPTION_PROMPT else "answer"


def test_training_mix_follows_the_fractions_and_reasoning_examples_verify():
    from vlthinker.answers import extract_answer, grade
    from vlthinker.prompts import REASONING_INSTRUCTION

    config = load_config(None)
    items = synthetic_items(config, 300, seed=10_000, split="train")
    answer_items = synthetic_items(config, 40, seed=20_000, split="train", max_difficulty=1)
    assert {record.difficulty for record, _ in answer_items} == {1}
    rows = build_training_rows(answer_items, items, reasoning_share=0.4, seed=0)
    assert all(row["kind"] == _kind(row) for row in rows), "each row names its own kind"
    kinds = Counter(_kind(row) for row in rows)
    assert kinds["answer"] == 40, "one direct answer per answer item"
    assert abs(kinds["reasoning"] / 300 - 0.4) < 0.1 and kinds["caption"] + kinds["reasoning"] == 300
    assert all(len(row["images"]) == 1 for row in rows), "every example shows its image"
    for (record, _), row in zip(answer_items, rows[:40], strict=True):
        assert row["completion"][0]["content"][0]["text"] == f"\\boxed{{{record.answer}}}"
    for (record, _), row in zip(items, rows[40:], strict=True):
        if _kind(row) != "reasoning":
            continue
        prompt = row["prompt"][0]["content"][-1]["text"]
        completion = row["completion"][0]["content"][0]["text"]
        assert record.caption in prompt and record.question in prompt and REASONING_INSTRUCTION in prompt
        assert completion.startswith("<think>") and completion.count("<answer>") == 1
        assert grade(extract_answer(completion), record.answer, record.choices), record.id
        assert "Wait" not in completion, "clean solutions: no reflections"
    without = build_training_rows([], items, reasoning_share=0.0, seed=0)
    assert set(Counter(_kind(row) for row in without)) == {"caption"}


def test_direct_answers_come_from_easy_questions_in_their_share_and_steps_hold_the_configured_shares():
    from vlthinker.model.batching import kind_step_batches
    from vlthinker.model.pretrain import pretraining_items, pretraining_trainer

    config = load_config(
        None,
        {
            **SMALL,
            "pretrain.answer_items": 30,
            "pretrain.n_train": 30,
            "pretrain.answer_fraction": 0.5,
            "pretrain.image_reasoning_fraction": 0.0,
            "pretrain.reasoning_fraction": 0.25,
            "pretrain.batch_size": 8,
            "pretrain.answer_easy_share": 1.0,
            "pretrain.arithmetic_fraction": 0.0,
        },
    )
    answer_items, items = pretraining_items(config)
    assert len(answer_items) == 30 and {r.difficulty for r, _ in answer_items} == {1}
    half = load_config(None, {**SMALL, "pretrain.answer_items": 30, "pretrain.answer_easy_share": 0.5})
    mixed_answers, _ = pretraining_items(half)
    assert {r.difficulty for r, _ in mixed_answers[:15]} == {1}
    assert {r.difficulty for r, _ in mixed_answers[15:]} == {1, 2, 3}
    assert {r.difficulty for r, _ in items} == {1, 2, 3}
    assert not {r.image_sha256 for r, _ in answer_items} & {r.image_sha256 for r, _ in items}
    rows = build_training_rows(answer_items, items, reasoning_share=0.5, seed=0)
    kinds = [row["kind"] for row in rows]
    _, dataset, per_step = pretraining_trainer([dict(row) for row in rows], config, _Tokenizer())
    assert per_step == 3 and len(dataset) == 60
    # each step holds the configured shares (4/2/2 of 8), not the pools' (30 answers : 30 others)
    shares = {"answer": 0.5, "reasoning": 0.25, "caption": 0.25}
    batches = kind_step_batches(kinds, 8, 4, 0, shares)
    assert [len(b) for b in batches[:3]] == [4, 2, 2]
    assert [{kinds[i] for i in b} for b in batches[:3]] == [{"answer"}, {"caption"}, {"reasoning"}]
    # mixed batching: the answers are cut to their share of the rows (30 others -> 30 * 0.5 / 0.5)
    mixed = config.model_copy(update={"pretrain": config.pretrain.model_copy(update={"batching": "mixed"})})
    _, dataset, per_step = pretraining_trainer([dict(row) for row in rows], mixed, _Tokenizer())
    assert per_step == 1 and len(dataset) == 60
    fewer = build_training_rows(answer_items, items[:10], reasoning_share=0.5, seed=0)
    _, dataset, _ = pretraining_trainer(fewer, mixed, _Tokenizer())
    assert len(dataset) == 20, "10 others + 10 answers at answer_fraction 0.5"


class _Tokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def test_training_mix_fractions_over_one_are_a_config_error():
    with pytest.raises(ConfigError, match="reasoning_fraction"):
        load_config(None, {"pretrain.answer_fraction": 0.7, "pretrain.reasoning_fraction": 0.4})


def test_each_step_holds_one_micro_batch_per_kind_in_the_mix_shares():
    from vlthinker.model.batching import kind_step_batches, step_allocation

    kinds = ["answer"] * 70 + ["caption"] * 50 + ["reasoning"] * 30
    assert step_allocation(kinds, 16) == {"answer": 8, "caption": 5, "reasoning": 3}
    batches = kind_step_batches(kinds, batch_size=16, steps=50, seed=0)
    assert batches == kind_step_batches(kinds, 16, 50, seed=0)
    assert batches != kind_step_batches(kinds, 16, 50, seed=1)
    assert len(batches) == 3 * 50
    for step in range(50):
        micro = batches[3 * step : 3 * step + 3]
        assert [{kinds[i] for i in batch} for batch in micro] == [{"answer"}, {"caption"}, {"reasoning"}]
        assert [len(batch) for batch in micro] == [8, 5, 3]
    # each kind's rows are all served before any of them is served again (an epoch per kind)
    answers = [i for batch in batches[0::3] for i in batch]
    assert sorted(answers[:70]) == list(range(70)) and sorted(answers[70:140]) == list(range(70))


def test_every_kind_gets_a_row_per_step_or_a_clear_error():
    from vlthinker.model.batching import step_allocation

    kinds = ["answer"] * 97 + ["caption"] * 2 + ["reasoning"]
    assert step_allocation(kinds, 8) == {"answer": 6, "caption": 1, "reasoning": 1}
    with pytest.raises(ValueError, match="batch_size 2 cannot hold one row of each of the 3 kinds"):
        step_allocation(kinds, 2)
    with pytest.raises(ValueError, match="no training rows"):
        step_allocation([], 8)


def test_a_step_loss_is_its_summed_token_loss_over_one_constant():
    from types import SimpleNamespace

    from vlthinker.model.batching import kind_step_trainer, mean_tokens_per_step

    class Trainer:  # the one method of transformers' Trainer whose count the subclass replaces
        model_accepts_loss_kwargs = False
        args = SimpleNamespace(world_size=1)

        def get_batch_samples(self, iterator, num_batches, device):
            return [next(iterator) for _ in range(num_batches)], 7  # 7: these batches' own count

    assert mean_tokens_per_step([2, 10, 30], [[0, 1], [2], [2]], steps=2) == 72 / 2
    trainer = kind_step_trainer(Trainer, [[0, 1], [2]], 36.0)()
    batches, count = trainer.get_batch_samples(iter([{"a": 1}, {"a": 2}]), 2, "cpu")
    assert batches == [{"a": 1}, {"a": 2}]
    # the trainer itself divides each micro-batch's loss by 2 (a model without loss kwargs)
    assert float(count) == 36.0 / 2
    trainer.model_accepts_loss_kwargs = True
    trainer.args = SimpleNamespace(world_size=2)
    _, count = trainer.get_batch_samples(iter([1, 2]), 2, "cpu")
    assert float(count) == 36.0 * 2, "a model scaling its own loss: the whole step's count, every rank"


def test_vision_lr_scale_zero_freezes_the_vision_tower_and_projector(tmp_path):
    from safetensors.torch import load_file

    from vlthinker.model.tiny import build_tiny

    config = load_config(None, {**SMALL, "pretrain.vision_lr_scale": 0.0, "pretrain.center_projector": False})
    pretrain_base(config, tmp_path / "base", log=lambda _: None)
    init = load_file(
        build_tiny(tmp_path / "init", seed=config.model.seed, spec=config.model.tiny) / "model.safetensors"
    )
    trained = load_file(tmp_path / "base" / "model.safetensors")
    vision = [name for name in init if ".visual." in f".{name}"]
    assert vision and all(init[name].equal(trained[name]) for name in vision), "vision tower untouched"
    language = [name for name in init if name not in vision]
    assert any(not init[name].equal(trained[name]) for name in language), "the language model trained"

    # centred: the projector's last bias moves once, before training; nothing else in the tower does
    centred = load_config(None, {**SMALL, "pretrain.vision_lr_scale": 0.0, "pretrain.center_projector": True})
    logs: list[str] = []
    pretrain_base(centred, tmp_path / "centred", log=logs.append)
    weights = load_file(tmp_path / "centred" / "model.safetensors")
    moved = [name for name in vision if not init[name].equal(weights[name])]
    assert moved == ["visual.merger.mlp.2.bias"], moved
    assert any("projector centred" in line for line in logs)


def test_centred_projector_outputs_have_zero_mean_on_its_images(tmp_path):
    import torch

    from vlthinker.model.loader import load_model
    from vlthinker.model.pretrain import center_projector
    from vlthinker.model.tiny import build_tiny

    config = load_config(None, SMALL)
    loaded = load_model(build_tiny(tmp_path / "m", seed=0, spec=config.model.tiny), device="cpu")
    images = [image for _, image in synthetic_items(config, 8, seed=3, split="train")]
    encoded = loaded.processor.image_processor(images=images, return_tensors="pt")

    def tokens():
        with torch.no_grad():
            visual = loaded.model.model.visual
            return visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"]).pooler_output

    before = tokens()
    share = center_projector(loaded.model, loaded.processor, images)
    after = tokens()
    assert 0.5 < share < 1.0, "at init most of a token is the shared direction"
    assert after.mean(0).norm() < 1e-3 * before.mean(0).norm()
    assert torch.allclose(after, before - before.mean(0), atol=1e-4)


def test_vision_lr_scale_sets_the_vision_parameter_group():
    from vlthinker.model.loader import load_model
    from vlthinker.model.pretrain import vision_scaled_optimizer
    from vlthinker.model.tiny import build_tiny

    config = load_config(None, {**SMALL, "pretrain.vision_lr_scale": 0.1, "pretrain.learning_rate": 0.002})
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        model = load_model(build_tiny(f"{scratch}/m", seed=0, spec=config.model.tiny), device="cpu").model
    optimizer = vision_scaled_optimizer(model, config)
    language, vision = optimizer.param_groups
    assert language["lr"] == 0.002 and abs(vision["lr"] - 0.0002) < 1e-12
    n_vision = sum(1 for name, _ in model.named_parameters() if ".visual." in f".{name}")
    assert len(vision["params"]) == n_vision > 0
    assert len(language["params"]) + n_vision == len(list(model.parameters()))
    with pytest.raises(ConfigError, match="vision_lr_scale"):
        load_config(None, {"pretrain.vision_lr_scale": 2})


def test_majority_baseline_uses_the_training_prior_and_falls_back_to_in_sample():
    from vlthinker.model.pretrain import answer_prior, score_direct_answers

    config = load_config(None)
    records = [r for r, _ in synthetic_items(config, 60, seed=5, split="heldout")]
    wrong = ["\\boxed{never}"] * len(records)
    _, _, in_sample = score_direct_answers(records, wrong)
    prior = answer_prior(records)
    _, _, same = score_direct_answers(records, wrong, prior)
    assert {t: s.majority for t, s in same.items()} == {t: s.majority for t, s in in_sample.items()}
    # a prior whose most common answer never occurs in the scored items scores 0 on those types
    absent = {qtype: Counter({"no such answer": 5}) for qtype in prior}
    _, _, blind = score_direct_answers(records, wrong, absent)
    assert all(score.majority == 0.0 for score in blind.values())
    assert all(score.accuracy == 0.0 for score in blind.values())


def test_image_reasoning_rows_ask_each_answer_item_from_the_image_alone_with_a_focused_verified_solution():
    from vlthinker.answers import extract_answer, grade
    from vlthinker.model.pretrain import pretraining_trainer
    from vlthinker.prompts import REASONING_INSTRUCTION

    config = load_config(None)
    items = synthetic_items(config, 20, seed=10_000, split="train")
    answer_items = synthetic_items(config, 60, seed=20_000, split="train")
    rows = build_training_rows(answer_items, items, reasoning_share=0.5, seed=0, image_reasoning=True)
    image_rows = [row for row in rows if row["kind"] == "image_reasoning"]
    assert len(image_rows) == 60, "one image-reasoning example per direct-answer item"
    for (record, _), row in zip(answer_items, image_rows, strict=True):
        prompt = row["prompt"][0]["content"]
        completion = row["completion"][0]["content"][0]["text"]
        assert prompt[0] == {"type": "image"} and len(row["images"]) == 1
        assert prompt[1]["text"] == f"{record.question}\n{REASONING_INSTRUCTION}"
        assert record.caption not in prompt[1]["text"], "the image alone, no description"
        assert grade(extract_answer(completion), record.answer, record.choices), record.id
        # focused: the one bar asked about, not all four
        if getattr(record, "question_type", None) == "bar_value":
            assert completion.count(" is ") + completion.count(" has a value of ") <= 2, completion
    assert Counter(row["kind"] for row in build_training_rows(answer_items, items, 0.5, 0)) == Counter(
        {"answer": 60, **Counter(row["kind"] for row in rows if row["kind"] in ("caption", "reasoning"))}
    ), "without image_reasoning the mix is unchanged"
    # each step holds the four configured shares; mixed batching cuts both answer-item kinds to theirs
    four = load_config(
        None,
        {
            **SMALL,
            "pretrain.batch_size": 16,
            "pretrain.answer_fraction": 0.5,
            "pretrain.image_reasoning_fraction": 0.25,
            "pretrain.reasoning_fraction": 0.125,
            "pretrain.arithmetic_fraction": 0.0,
        },
    )
    _, dataset, per_step = pretraining_trainer([dict(row) for row in rows], four, _Tokenizer())
    assert per_step == 4 and len(dataset) == len(rows)
    mixed = four.model_copy(update={"pretrain": four.pretrain.model_copy(update={"batching": "mixed"})})
    _, dataset, _ = pretraining_trainer([dict(row) for row in rows], mixed, _Tokenizer())
    assert len(dataset) == 20 + 40 + 20, "20 others at a quarter: 40 answers (a half), 20 image reasoning"


def test_image_reasoning_shares_are_validated_with_the_others():
    with pytest.raises(ConfigError, match="image_reasoning_fraction"):
        load_config(None, {"pretrain.answer_fraction": 0.6, "pretrain.image_reasoning_fraction": 0.3})
    with pytest.raises(ConfigError, match="needs answer_fraction > 0"):
        load_config(None, {"pretrain.answer_fraction": 0.0, "pretrain.image_reasoning_fraction": 0.3})


def test_arithmetic_drills_are_their_own_kind_in_their_share_and_validated():
    from vlthinker.model.arithmetic import drills
    from vlthinker.model.batching import step_allocation
    from vlthinker.model.pretrain import arithmetic_drills, pretraining_trainer

    config = load_config(None)
    assert len(arithmetic_drills(config)) == 4000, "on by default: 2 of 18 rows a step"
    assert arithmetic_drills(load_config(None, {"pretrain.arithmetic_fraction": 0.0})) == []
    items = synthetic_items(config, 20, seed=10_000, split="train")
    answer_items = synthetic_items(config, 40, seed=20_000, split="train")
    drill_pairs = drills(30, seed=0)
    rows = build_training_rows(answer_items, items, 0.5, 0, image_reasoning=True, arithmetic=drill_pairs)
    drill_rows = [row for row in rows if row["kind"] == "arithmetic"]
    assert len(drill_rows) == 30
    for (prompt, completion), row in zip(drill_pairs, drill_rows, strict=True):
        assert row["prompt"][0]["content"][1]["text"] == prompt
        assert row["completion"][0]["content"][0]["text"] == completion
        assert len(row["images"]) == 1, "every row of the VLM's batches carries an image"
    with pytest.raises(ValueError, match="need at least one pretraining item"):
        build_training_rows([], [], 0.5, 0, arithmetic=drill_pairs)

    five = load_config(
        None,
        {
            **SMALL,
            "pretrain.batch_size": 18,
            "pretrain.answer_fraction": 9 / 18,
            "pretrain.image_reasoning_fraction": 3 / 18,
            "pretrain.reasoning_fraction": 2 / 18,
            "pretrain.arithmetic_fraction": 2 / 18,
            "pretrain.arithmetic_drills": 30,
        },
    )
    assert len(arithmetic_drills(five)) == 30
    assert five.pretrain.kind_shares()["caption"] == pytest.approx(2 / 18)
    kinds = [row["kind"] for row in rows]
    assert step_allocation(kinds, 18, five.pretrain.kind_shares()) == {
        "answer": 9,
        "arithmetic": 2,
        "caption": 2,
        "image_reasoning": 3,
        "reasoning": 2,
    }
    _, dataset, per_step = pretraining_trainer([dict(row) for row in rows], five, _Tokenizer())
    assert per_step == 5 and len(dataset) == len(rows)
    mixed = five.model_copy(update={"pretrain": five.pretrain.model_copy(update={"batching": "mixed"})})
    others = sum(kind in ("caption", "reasoning") for kind in kinds)
    _, dataset, _ = pretraining_trainer([dict(row) for row in rows], mixed, _Tokenizer())
    # caption + text reasoning are 4/18 of the rows: the drills are cut to half of them
    assert len(dataset) == others + min(40, round(others * 9 / 4)) + min(40, round(others * 3 / 4)) + round(
        others * 2 / 4
    )
    with pytest.raises(ConfigError, match="arithmetic_fraction"):
        load_config(None, {"pretrain.arithmetic_fraction": 0.3})


def test_restatement_examples_copy_the_question_into_the_teachers_first_sentence():
    from vlthinker.model.arithmetic import drills
    from vlthinker.model.batching import step_allocation
    from vlthinker.model.pretrain import RESTATE_INSTRUCTION, restatement

    config = load_config(None)
    answer_items = synthetic_items(config, 40, seed=20_000, split="train")
    items = synthetic_items(config, 10, seed=10_000, split="train")
    sums = drills(10, seed=0)
    rows = build_training_rows(
        answer_items, items, 0.5, 0, image_reasoning=True, arithmetic=sums, restate=True
    )
    restated = [row for row in rows if row["kind"] == "restate"]
    assert len(restated) == len(answer_items), "one restatement per direct-answer item"
    for (record, image), row in zip(answer_items, restated, strict=True):
        prompt = row["prompt"][0]["content"]
        assert prompt[1]["text"] == f"{record.question}\n{RESTATE_INSTRUCTION}"
        target = row["completion"][0]["content"][0]["text"]
        assert target.startswith("The question asks ") and target.endswith(".") and "\n" not in target
        assert row["images"] == [image]
        # the words that name what is asked about (colours, shapes) are copied from the question
        named = {"red", "green", "blue", "yellow", "purple", "circle", "square", "triangle"}
        asked = set(record.question.lower().rstrip("?").split()) & named
        assert asked <= set(target.lower().rstrip(".").split()), (record.question, target)
    without = build_training_rows(answer_items, items, 0.5, 0, image_reasoning=True, arithmetic=sums)
    assert [row for row in rows if row["kind"] != "restate"] == without, "the other kinds do not change"

    record = answer_items[0][0]
    assert restatement(record, "<think>Okay, so the question asks how many shapes there are.\n\nSix.") == (
        "The question asks how many shapes there are."
    )
    with pytest.raises(ValueError, match=record.id):
        restatement(record, "<think>Six shapes.</think><answer>6</answer>")

    config = load_config(
        None,
        {
            "pretrain.batch_size": 20,
            "pretrain.answer_fraction": 9 / 20,
            "pretrain.image_reasoning_fraction": 3 / 20,
            "pretrain.reasoning_fraction": 2 / 20,
            "pretrain.arithmetic_fraction": 2 / 20,
            "pretrain.restate_fraction": 2 / 20,
        },
    )
    assert config.pretrain.kind_shares()["caption"] == pytest.approx(2 / 20)
    kinds = [row["kind"] for row in rows]
    allocation = step_allocation(kinds, 20, config.pretrain.kind_shares())
    assert allocation["restate"] == 2 and allocation["answer"] == 9 and allocation["caption"] == 2


def test_restatement_share_is_validated_with_the_others():
    with pytest.raises(ConfigError, match="restate_fraction"):
        load_config(None, {"pretrain.restate_fraction": 0.3})
    no_answers = {"pretrain.answer_fraction": 0.0, "pretrain.image_reasoning_fraction": 0.0}
    with pytest.raises(ConfigError, match="needs answer_fraction > 0"):
        load_config(None, {**no_answers, "pretrain.restate_warmup_steps": 10})
    with pytest.raises(ConfigError, match="restate_fraction > 0 or restate_warmup_steps > 0 needs"):
        load_config(
            None,
            {
                "pretrain.answer_fraction": 0.0,
                "pretrain.image_reasoning_fraction": 0.0,
                "pretrain.restate_fraction": 0.1,
            },
        )


def test_restatement_warmup_trains_its_steps_first_and_keeps_the_vision_tower(tmp_path):
    from safetensors.torch import load_file

    plain = load_config(None, SMALL)
    warm = load_config(None, {**SMALL, "pretrain.restate_warmup_steps": 4})
    assert cache_key(warm) != cache_key(plain), "the warm-up is part of what the cache key names"
    logs: list[str] = []
    pretrain_base(plain, tmp_path / "plain", log=lambda _: None)
    pretrain_base(warm, tmp_path / "warm", log=logs.append)
    warmup_lines = [line for line in logs if line.startswith("pretrain (restatements): step")]
    assert warmup_lines and "step 4/4" in warmup_lines[-1], logs
    assert logs.index(warmup_lines[-1]) < min(
        i for i, line in enumerate(logs) if line.startswith("pretrain: step")
    )
    assert any("(and 4 restatement steps first)" in line for line in logs)
    a = load_file(tmp_path / "plain" / "model.safetensors")
    b = load_file(tmp_path / "warm" / "model.safetensors")
    vision = [name for name in a if ".visual." in f".{name}"]
    assert all(a[name].equal(b[name]) for name in vision), "the warm-up leaves the vision tower as it was"
    assert any(not a[name].equal(b[name]) for name in a if name not in vision), "the warm-up trained"


def test_warmup_rows_add_the_mixs_own_drills_in_their_share():
    from vlthinker.model.arithmetic import drills
    from vlthinker.model.pretrain import PRETRAIN_ARITHMETIC_SEED_OFFSET, warmup_rows

    config = load_config(None)
    answer_items = synthetic_items(config, 12, seed=20_000, split="train")
    only = warmup_rows(answer_items, config)
    assert [row["kind"] for row in only] == ["restate"] * 12
    half = warmup_rows(answer_items, load_config(None, {"pretrain.restate_warmup_arithmetic": 0.5}))
    assert half[:12] == only
    sums = half[12:]
    assert len(sums) == 12 and all(row["kind"] == "arithmetic" for row in sums)
    expected = drills(12, PRETRAIN_ARITHMETIC_SEED_OFFSET + config.pretrain.seed)
    assert [row["completion"][0]["content"][0]["text"] for row in sums] == [c for _, c in expected]
    assert sums[0]["images"] == [answer_items[0][1]]
    quarter = warmup_rows(answer_items, load_config(None, {"pretrain.restate_warmup_arithmetic": 0.25}))
    assert len(quarter) == 12 + 4
    with pytest.raises(ConfigError, match="restate_warmup_arithmetic"):
        load_config(None, {"pretrain.restate_warmup_arithmetic": 1.0})
