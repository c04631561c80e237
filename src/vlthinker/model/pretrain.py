"""Base pretraining of the tiny VLM: the analogue of the instruct VLM the paper starts from.

The tiny model learns to see (image → exact caption), to answer directly (question → ``\\boxed{X}``,
no reasoning, as the paper prompts its Qwen baseline), and to reason in text (exact caption + question
→ a correct step-by-step solution: reading, copying values, arithmetic, which the paper's instruct
base brings from its language model; without them SFT on traces starts from a model that cannot copy
a number from its own context), to reason about the image it sees (question → the teacher's
focused solution, no description given), and to add, subtract and multiply (arithmetic drills in the
chains' notation, :mod:`vlthinker.model.arithmetic`; without them 80% of the equations in its chains
were wrong). Its held-out direct-answer accuracy is the baseline the first iteration has to beat;
the report also scores its arithmetic on held-out drills. Results are cached by content (config +
seed + recipe version), and a cache entry whose weights no longer match their recorded hash is rebuilt.
The package ships the default recipe's base (``prebuilt/<cache key>``, ~37 minutes of pretraining on
2 cores), which a run with exactly that recipe takes like a cache entry.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.fsutil import replace_dir, swap_into_place
from vlthinker.logs import quiet_logger
from vlthinker.prompts import (
    CAPTION_PROMPT,
    assistant_message,
    direct_question,
    reasoning_question,
    user_message,
)
from vlthinker.records import Record, sha256_bytes

RECIPE_VERSION = 9  # bump when the pretraining code changes what it produces
PRETRAIN_SEED_OFFSET = 10_000  # pretraining items come from their own seed stream
PRETRAIN_ANSWER_SEED_OFFSET = 20_000  # and its direct-answer items from another
PRETRAIN_ARITHMETIC_SEED_OFFSET = 30_000  # the arithmetic drills (train and held-out streams)
ARITHMETIC_EVAL_DRILLS = 100  # held-out drills the base's arithmetic is scored on
ARITHMETIC_EVAL_TOKENS = 256  # room for the longest drill's equations
ANY_DIFFICULTY_SEED_SHIFT = 5_000  # direct answers to questions of every difficulty: a third stream
REPORT_FILE = "base_report.json"
PREBUILT_ROOT = Path(__file__).with_name("prebuilt")  # bases shipped with the package, by cache key
PROVENANCE_FILE = "provenance.json"  # beside a shipped base: how and when it was built
RESTATE_INSTRUCTION = "Restate the question."
RESTATEMENT = re.compile(r"[Tt]he question asks ([^\n]+?)\.(?:\n|$)")
CENTERING_IMAGES = 64  # pretraining images whose mean projector output center_projector removes

Log = Callable[[str], None]


@dataclass
class TaskScore:
    n: int
    accuracy: float
    chance: float
    majority: float

    @property
    def above_chance(self) -> bool:
        """Clearly above chance: at least 10 points over both uniform guessing and the majority answer."""
        return self.accuracy >= max(self.chance, self.majority) + 0.10


@dataclass
class BaseReport:
    cache_key: str
    model_sha256: str
    train_loss: float
    caption_loss: float
    heldout_accuracy: float
    format_rate: float
    per_task: dict[str, TaskScore] = field(default_factory=dict)
    steps: int = 0
    train_seconds: float = 0.0
    n_train_items: int = 0
    n_heldout_items: int = 0
    arithmetic_accuracy: float | None = None  # share of right equations on held-out drills

    @property
    def families_above_chance(self) -> list[str]:
        return sorted(task for task, score in self.per_task.items() if score.above_chance)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["families_above_chance"] = self.families_above_chance
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> BaseReport:
        payload = dict(payload)
        payload.pop("families_above_chance", None)
        payload["per_task"] = {k: TaskScore(**v) for k, v in payload.get("per_task", {}).items()}
        return cls(**payload)


def cache_key(config: Config) -> str:
    """Content key of a base model: model spec + pretraining recipe + data shape + seeds."""
    import hashlib

    payload = {
        "recipe_version": RECIPE_VERSION,
        "model": config.model.model_dump(mode="json"),
        "pretrain": config.pretrain.model_dump(mode="json", exclude={"use_prebuilt"}),
        "data": {
            "tasks": config.data.tasks,
            "image_size": config.data.image_size,
            "max_difficulty": config.data.max_difficulty,
            "seed": config.data.seed,
        },
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_training_rows(
    answer_items: list[tuple[Record, Any]],
    items: list[tuple[Record, Any]],
    reasoning_share: float,
    seed: int,
    image_reasoning: bool = False,
    arithmetic: list[tuple[str, str]] | None = None,
    restate: bool = False,
) -> list[dict]:
    """Direct boxed answers to ``answer_items`` (and with ``image_reasoning``, each of them once more
    as an image-reasoning example); for each of ``items`` a text-reasoning example (with probability
    ``reasoning_share``) or else a caption.

    Each row names its kind (``answer``, ``image_reasoning``, ``reasoning`` or ``caption``) under
    ``"kind"``. An image-reasoning example asks the question of the image alone for step-by-step
    reasoning; its target is the offline teacher's correct *focused* chain (the values the question
    needs, no overview of the whole scene): the instruct VLM's ability to reason about an image it sees,
    which a model trained on direct answers alone does not have in the reasoning format. A
    text-reasoning example shows the exact caption beside the image and asks for step-by-step
    reasoning; its target is a correct chain of the offline teacher (no slips, no reflections), so
    the model learns to read a scene description, copy values and do the arithmetic: the language
    skills the instruct VLM the paper starts from already has. Each of ``arithmetic`` (prompt,
    completion) drills (:mod:`vlthinker.model.arithmetic`) becomes an ``arithmetic`` row; it carries
    an image of ``items`` (or ``answer_items``) in turn, which it does not need: every row of the
    tiny VLM's batches has one. With ``restate``, each of ``answer_items`` also becomes a ``restate``
    row: its question and "Restate the question." -> the first sentence of the teacher's chain ("The
    question asks for the value of the purple bar."), a copy of the question's words.
    """
    rng = random.Random(f"pretrain-mix:{seed}")
    teacher = clean_teacher(seed, "full")
    rows = [
        _row("answer", direct_question(record.question), f"\\boxed{{{record.answer}}}", image)
        for record, image in answer_items
    ]
    if image_reasoning:
        focused = clean_teacher(seed, "focused")
        for record, image in answer_items:
            solution = verified_solution(record, focused)
            rows.append(_row("image_reasoning", reasoning_question(record.question), solution, image))
    if restate:
        rows += restatement_rows(answer_items, seed)
    for record, image in items:
        if rng.random() < reasoning_share:
            rows.append(_row("reasoning", *text_reasoning_example(record, teacher), image))
        else:
            rows.append(_row("caption", CAPTION_PROMPT, record.caption or "", image))
    if arithmetic:
        images = [image for _, image in (items or answer_items)]
        if not images:
            raise ValueError("arithmetic drills need at least one pretraining item for their image")
        rows += drill_rows(arithmetic, images)
    return rows


def drill_rows(pairs: list[tuple[str, str]], images: list[Any]) -> list[dict]:
    """An ``arithmetic`` row per (prompt, completion) drill, carrying ``images`` in turn."""
    return [
        _row("arithmetic", prompt, completion, images[index % len(images)])
        for index, (prompt, completion) in enumerate(pairs)
    ]


def restatement_rows(answer_items: list[tuple[Record, Any]], seed: int) -> list[dict]:
    """A ``restate`` row per item: its question and "Restate the question." -> the first sentence of
    the focused teacher's solution ("The question asks for the value of the purple bar.")."""
    focused = clean_teacher(seed, "focused")
    rows = []
    for record, image in answer_items:
        target = restatement(record, verified_solution(record, focused))
        rows.append(_row("restate", f"{record.question}\n{RESTATE_INSTRUCTION}", target, image))
    return rows


def restatement(record: Record, solution: str) -> str:
    """The sentence of ``solution`` that restates ``record``'s question ("The question asks ...")."""
    found = RESTATEMENT.search(solution)
    if found is None:
        raise ValueError(
            f"pretraining item {record.id!r}: the teacher's solution has no sentence 'the question asks ...' "
            "to restate"
        )
    return f"The question asks {found.group(1)}."


# The offline teacher's knobs that make it write clean solutions: the pretraining chains' style.
CLEAN_TEACHER: dict[str, Any] = {
    "reflection_prob": 0.0,
    "error_prob": 0.0,
    "long_prob": 0.0,
    "verbosity_max": 0,
}


def clean_teacher(seed: int, style: str) -> Any:
    """The offline teacher writing clean solutions (no slips, reflections, fillers or rambling)."""
    from vlthinker.teacher.offline import OfflineTeacher, OfflineTeacherConfig

    return OfflineTeacher(OfflineTeacherConfig(**CLEAN_TEACHER, seed=seed, style=style))


def _reasoning_share(config: Config) -> float:
    """Share of the caption/reasoning items that become text-reasoning examples."""
    p = config.pretrain
    return p.reasoning_fraction / p.item_fraction if p.item_fraction > 0 else 0.0


def _row(kind: str, prompt: str, completion: str, image: Any) -> dict:
    return {
        "prompt": user_message(prompt),
        "completion": assistant_message(completion),
        "images": [image],
        "kind": kind,
    }


def arithmetic_drills(config: Config) -> list[tuple[str, str]]:
    """The pretraining arithmetic drills (none when ``pretrain.arithmetic_fraction`` is 0)."""

    p = config.pretrain
    if p.arithmetic_fraction <= 0:
        return []
    return drill_stream(config, p.arithmetic_drills)


def drill_stream(config: Config, count: int) -> list[tuple[str, str]]:
    """The first ``count`` drills of the pretraining drill stream (its own seed)."""
    from vlthinker.model.arithmetic import drills

    return drills(count, PRETRAIN_ARITHMETIC_SEED_OFFSET + config.pretrain.seed)


def answer_item_count(config: Config) -> int:
    """Distinct direct-answer items: ``pretrain.answer_items``, or twice ``n_train`` when unset."""
    return config.pretrain.answer_items or 2 * config.pretrain.n_train


def pretraining_items(config: Config) -> tuple[list[tuple[Record, Any]], list[tuple[Record, Any]]]:
    """(direct-answer items, caption/reasoning items) for base pretraining, from their own seed streams.

    ``pretrain.answer_easy_share`` of the direct answers are to questions of difficulty <=
    ``pretrain.answer_max_difficulty`` (1: read one thing), the rest to questions of every difficulty.
    """
    p = config.pretrain
    answer_items: list[tuple[Record, Any]] = []
    if p.answer_fraction > 0:
        n_answers = answer_item_count(config)
        n_easy = round(n_answers * p.answer_easy_share)
        seed = PRETRAIN_ANSWER_SEED_OFFSET + p.seed
        easy = min(p.answer_max_difficulty, config.data.max_difficulty)
        answer_items = synthetic_items(config, n_easy, seed, "train", max_difficulty=easy) if n_easy else []
        if n_answers > n_easy:  # the rest from every difficulty, its own stream
            answer_items += synthetic_items(
                config, n_answers - n_easy, seed + ANY_DIFFICULTY_SEED_SHIFT, "train"
            )
    items = (
        synthetic_items(config, p.n_train, PRETRAIN_SEED_OFFSET + p.seed, "train")
        if p.item_fraction > 0
        else []
    )
    return answer_items, items


def text_reasoning_example(record: Record, teacher: Any) -> tuple[str, str]:
    """(prompt, completion): exact caption + question -> the offline ``teacher``'s verified solution."""
    prompt = f"Image description: {record.caption}\n\n{reasoning_question(record.question)}"
    return prompt, verified_solution(record, teacher)


def verified_solution(record: Record, teacher: Any) -> str:
    """The offline ``teacher``'s solution to ``record`` from its exact caption, in the SFT completion
    format (``<think>..</think><answer>..</answer>``); an error if it does not reach the answer."""
    from vlthinker.answers import extract_answer, grade
    from vlthinker.steps.traces import Trace, split_chain

    chain = teacher.sample(
        record.id, record.caption or "", record.question, record.task, _question_type(record), 1
    )[0]
    parts = split_chain(chain)
    final = extract_answer(parts[1]) if parts else None
    if parts is None or final is None or not grade(final, record.answer, record.choices):
        raise ValueError(f"pretraining item {record.id!r}: the offline teacher's solution does not verify")
    return Trace(reasoning=parts[0], answer=final, truncated=False).completion


def pretraining_trainer(rows: list[dict], config: Config, tokenizer: Any) -> tuple[type, Any, int]:
    """(trainer class, dataset, gradient accumulation steps) for the pretraining rows.

    ``by_kind``: every optimizer step accumulates one micro-batch per kind of example in the kinds'
    configured shares (``kind_step_batches``), and its summed token loss is divided by the mean loss
    tokens per step, so a step's gradient is a mixed batch's without the padding; ``mixed``: plain
    random batches of ``batch_size``, each batch's loss its own token mean, over the rows with the
    direct answers cut to their share.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    from vlthinker.model.batching import kind_step_batches, kind_step_trainer, mean_tokens_per_step

    p = config.pretrain
    shares, rest = p.kind_shares(), p.item_fraction
    if p.batching == "mixed":  # answer-item rows and drills cut to their shares of the rows
        pooled = ("answer", "image_reasoning", "arithmetic", "restate")
        others = [row for row in rows if row["kind"] not in pooled]
        kept = []
        for kind in pooled:
            of_kind = [row for row in rows if row["kind"] == kind]
            kept += of_kind if rest <= 0 else of_kind[: round(len(others) * shares[kind] / rest)]
        rows = kept + others
    kinds = [row.pop("kind") for row in rows]
    dataset = Dataset.from_list(rows)
    if p.batching == "mixed":
        return SFTTrainer, dataset, 1
    batches = kind_step_batches(kinds, p.batch_size, p.steps, p.seed, shares)
    tokens = [_completion_tokens(tokenizer, row) for row in rows]
    per_step = len(set(kinds))
    return (
        kind_step_trainer(SFTTrainer, batches, mean_tokens_per_step(tokens, batches, p.steps)),
        dataset,
        per_step,
    )


def vision_scaled_optimizer(model: Any, config: Config):
    """AdamW (the trainer's defaults) with the vision tower and projector at ``vision_lr_scale`` times
    the learning rate; at 0 they are frozen (no gradients computed).

    Measured on one clock-hour question (600 steps, 9600 images): trained at the full rate the tiny
    model stays at chance (10%, chance 8%) although a linear read-out of its pooled image tokens gets
    72-88%; vision frozen 40%, at 0.1x 30%. The projector is the part that must not run ahead.
    """
    import torch

    from vlthinker.training.common import vision_parameters

    p = config.pretrain
    vision, language = vision_parameters(model)
    if not vision:
        raise ValueError("pretraining: the model has no parameters under 'visual' (not a Qwen2.5-VL model?)")
    groups = [{"params": language, "lr": p.learning_rate}]
    if p.vision_lr_scale == 0:
        for param in vision:
            param.requires_grad_(False)
    else:
        groups.append({"params": vision, "lr": p.learning_rate * p.vision_lr_scale})
    return torch.optim.AdamW(groups, lr=p.learning_rate, weight_decay=p.weight_decay)


def image_tokens(model: Any, processor: Any, images: list[Any]):
    """The projector's output tokens for ``images`` (what the language model sees), all images'
    tokens one after the other: a ``(n_images * tokens_per_image, hidden)`` tensor."""
    import torch

    encoded = processor.image_processor(images=images, return_tensors="pt")
    visual = model.model.visual
    with torch.no_grad():
        pixels = encoded["pixel_values"].to(model.device, dtype=visual.dtype)
        return visual(pixels, grid_thw=encoded["image_grid_thw"].to(model.device)).pooler_output


def center_projector(model: Any, processor: Any, images: list[Any]) -> float:
    """Subtract the projector's mean output token over ``images`` from its last bias; return the
    removed mean's norm as a share of the mean token norm.

    At init ~90% of every image token is one shared direction (white background, the GELU's positive
    mean), and the language model has to learn to see past it. Centred, with the vision tower frozen
    (``vision_lr_scale`` 0, so the centring stays true), one clock-hour question went from chance to
    96% in 600 steps (frozen alone 40%, centred alone 10%: the tower drifts off its centre).
    """
    import torch

    last = model.model.visual.merger.mlp[-1]
    if not isinstance(last, torch.nn.Linear) or last.bias is None:
        raise ValueError("center_projector: the projector's last layer is not a Linear with a bias")
    tokens = image_tokens(model, processor, images)
    mean = tokens.mean(0)
    with torch.no_grad():
        last.bias.sub_(mean)
    return float(mean.norm() / tokens.norm(dim=-1).mean())


def _completion_tokens(tokenizer: Any, row: dict) -> int:
    """Tokens of an assistant completion the loss is taken on: its text and the closing ``<|im_end|>``."""
    text = "".join(part["text"] for message in row["completion"] for part in message["content"])
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1


def caption_rows(items: list[tuple[Record, Any]]) -> list[dict]:
    return [
        {
            "prompt": user_message(CAPTION_PROMPT),
            "completion": assistant_message(record.caption or ""),
            "images": [image],
        }
        for record, image in items
    ]


def synthetic_items(
    config: Config, n: int, seed: int, split: str, max_difficulty: int | None = None
) -> list[tuple[Record, Any]]:
    """Generate synthetic items in memory as (record, PIL image) pairs (difficulty up to
    ``max_difficulty``, default the data config's)."""
    import io

    from PIL import Image

    from vlthinker.sources.generate import generate_items

    items = []
    for record, png in generate_items(
        n,
        seed=seed,
        split=split,
        tasks=config.data.tasks,
        image_size=config.data.image_size,
        max_difficulty=max_difficulty or config.data.max_difficulty,
    ):
        image = Image.open(io.BytesIO(png))
        image.load()
        items.append((record, image.convert("RGB")))
    return items


def score_direct_answers(
    records: list[Record], predictions: list[str], prior: dict[str, Counter] | None = None
) -> tuple[float, float, dict[str, TaskScore]]:
    """Accuracy overall, boxed-format rate, and per task family with chance and majority baselines.

    The majority baseline answers each question type's most common answer in ``prior`` (answer
    counts per question type, e.g. of the training data: what a model blind to the image learns);
    question types absent from it (or all, without a prior) use their most common answer among the
    scored ``records`` themselves, which at a few items per type is biased upward.
    """
    from vlthinker.answers import extract_answer, grade
    from vlthinker.sources.generate import chance_accuracy

    by_task: dict[str, list[tuple[Record, bool]]] = defaultdict(list)
    formatted = 0
    for record, prediction in zip(records, predictions, strict=True):
        extracted = extract_answer(prediction)
        formatted += extracted is not None
        by_task[record.task].append((record, grade(extracted, record.answer, record.choices)))
    per_task = {}
    for task, rows in sorted(by_task.items()):
        per_task[task] = TaskScore(
            n=len(rows),
            accuracy=sum(ok for _, ok in rows) / len(rows),
            chance=sum(chance_accuracy(_question_type(r)) for r, _ in rows) / len(rows),
            majority=_majority_baseline([r for r, _ in rows], prior or {}),
        )
    total = sum(len(rows) for rows in by_task.values())
    correct = sum(ok for rows in by_task.values() for _, ok in rows)
    return correct / max(total, 1), formatted / max(total, 1), per_task


def base_heldout_items(config: Config) -> list[tuple[Record, Any]]:
    """The held-out items a base is scored on (the data config's held-out stream)."""
    return synthetic_items(config, config.pretrain.n_heldout, config.data.seed, "heldout")


def score_base(
    loaded: Any,
    config: Config,
    heldout_items: list[tuple[Record, Any]],
    prior: dict[str, Counter] | None = None,
) -> tuple[float, float, dict[str, TaskScore]]:
    """Greedy direct answers of ``loaded`` to ``heldout_items``, scored as in the base report."""
    from vlthinker.backends.hf import SamplingParams, generate

    records = [record for record, _ in heldout_items]
    outputs = generate(
        loaded,
        [user_message(direct_question(r.question)) for r in records],
        [image for _, image in heldout_items],
        SamplingParams(max_new_tokens=config.pretrain.max_new_tokens),
        batch_size=config.pretrain.eval_batch_size,
    )
    return score_direct_answers(records, [o[0] for o in outputs], prior)


def _question_type(record: Record) -> str:
    return str(getattr(record, "question_type", None) or record.task)


def answer_prior(records: list[Record]) -> dict[str, Counter]:
    """Answer counts per question type."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        counts[_question_type(record)][record.answer] += 1
    return dict(counts)


def _majority_baseline(records: list[Record], prior: dict[str, Counter]) -> float:
    """Accuracy of always giving each question type's most common answer: in ``prior`` where it has
    the type, else among ``records`` themselves (an in-sample oracle)."""
    hits = 0
    for qtype, counter in answer_prior(records).items():
        if prior.get(qtype):
            hits += counter[prior[qtype].most_common(1)[0][0]]
        else:
            hits += counter.most_common(1)[0][1]
    return hits / max(len(records), 1)


def _trainer_args(
    config: Config, output_dir: str, device: str, accumulation: int = 1, warmup_phase: bool = False
):
    """The pretraining mix's trainer arguments, or with ``warmup_phase`` the restatement warm-up's
    (``restate_warmup_steps`` steps at a constant learning rate)."""
    from trl import SFTConfig

    p = config.pretrain
    on_gpu = device.startswith("cuda")
    steps = p.restate_warmup_steps if warmup_phase else p.steps
    return SFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=p.batch_size,  # by_kind: the micro-batches come from the trainer class
        gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=p.eval_batch_size,
        max_steps=steps,
        learning_rate=p.learning_rate,
        lr_scheduler_type="constant" if warmup_phase else "cosine",
        warmup_steps=0 if warmup_phase else int(p.warmup_ratio * p.steps),
        weight_decay=p.weight_decay,
        logging_steps=p.log_every,
        save_strategy="no",
        report_to=[],
        gradient_checkpointing=False,
        max_length=None,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        seed=p.seed,
        data_seed=p.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def train_base(config: Config, model_dir: Path, log: Log) -> BaseReport:
    """Build the tiny model, pretrain it, score it, and save it into ``model_dir``."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback

    from vlthinker.model.loader import LoadedModel, default_device, load_model, save_model
    from vlthinker.model.tiny import build_tiny
    from vlthinker.training.common import progress_callback

    p = config.pretrain
    device = default_device()
    torch.manual_seed(p.seed)
    build_tiny(model_dir, seed=config.model.seed, spec=config.model.tiny, image_size=config.data.image_size)
    loaded = load_model(model_dir, device=device)
    log(
        f"pretrain: generating {answer_item_count(config)} direct-answer ({p.answer_easy_share:.0%} of "
        f"difficulty <= {p.answer_max_difficulty}), "
        f"{p.n_train} caption/reasoning and {p.n_heldout} held-out synthetic items"
    )
    answer_items, train_items = pretraining_items(config)
    heldout_items = base_heldout_items(config)
    if p.center_projector:
        images = [image for _, image in (train_items or answer_items)[:CENTERING_IMAGES]]
        share = center_projector(loaded.model, loaded.processor, images)
        log(f"pretrain: projector centred (its mean output was {share:.0%} of an image token's norm)")
    drills = arithmetic_drills(config)
    trainer_cls, train_ds, accumulation = pretraining_trainer(
        build_training_rows(
            answer_items,
            train_items,
            _reasoning_share(config),
            p.seed,
            p.image_reasoning_fraction > 0,
            drills,
            p.restate_fraction > 0,
        ),
        config,
        loaded.processor.tokenizer,
    )
    caption_eval_ds = Dataset.from_list(caption_rows(heldout_items))

    with tempfile.TemporaryDirectory(prefix="vlthinker-pretrain-") as scratch:
        loaded.model.train()
        warmup_seconds = 0.0
        if p.restate_warmup_steps > 0:
            warmup_seconds = restatement_warmup(loaded, answer_items, config, scratch, device, log)
        trainer = trainer_cls(
            model=loaded.model,
            args=_trainer_args(config, scratch, device, accumulation),
            train_dataset=train_ds,
            eval_dataset=caption_eval_ds,
            processing_class=loaded.processor,
            callbacks=[progress_callback("pretrain", log, p.batch_size)],
            optimizers=(vision_scaled_optimizer(loaded.model, config), None),
        )
        trainer.remove_callback(PrinterCallback)  # the progress callback prints one line per log event
        # accelerate logs "The used dataset had no length" at INFO once per evaluation batch
        with quiet_logger("accelerate.accelerator"):
            started = time.monotonic()
            result = trainer.train()
            train_seconds = time.monotonic() - started + warmup_seconds
            caption_loss = float(trainer.evaluate()["eval_loss"])
    model = trainer.model.eval()
    warmup = f" (and {p.restate_warmup_steps} restatement steps first)" if p.restate_warmup_steps else ""
    log(
        f"pretrain: trained {p.steps} steps{warmup} in {train_seconds:.0f}s; held-out caption loss "
        f"{caption_loss:.4f}"
    )

    accuracy, format_rate, per_task = score_base(
        LoadedModel(model=model, processor=loaded.processor, ref=str(model_dir)),
        config,
        heldout_items,
        answer_prior([record for record, _ in answer_items]),
    )
    arithmetic = score_arithmetic(
        LoadedModel(model=model, processor=loaded.processor, ref=str(model_dir)),
        config,
        [image for _, image in heldout_items],
    )
    log(f"pretrain: held-out arithmetic drills: {arithmetic:.1%} of the equations right")
    save_model(model, loaded.processor, model_dir)
    return BaseReport(
        cache_key=cache_key(config),
        model_sha256=sha256_bytes((model_dir / "model.safetensors").read_bytes()),
        train_loss=float(result.training_loss),
        caption_loss=caption_loss,
        heldout_accuracy=accuracy,
        format_rate=format_rate,
        per_task=per_task,
        steps=p.steps,
        train_seconds=train_seconds,
        n_train_items=len(train_items) + len(answer_items),
        n_heldout_items=len(heldout_items),
        arithmetic_accuracy=arithmetic,
    )


def warmup_rows(answer_items: list[tuple[Record, Any]], config: Config) -> list[dict]:
    """The restatement warm-up's rows: a restatement per direct-answer item and, with
    ``restate_warmup_arithmetic`` = s > 0, s / (1 - s) times as many arithmetic drills (the first of
    the mix's own drill stream), each carrying a direct-answer item's image in turn."""
    p = config.pretrain
    rows = restatement_rows(answer_items, p.seed)
    share = p.restate_warmup_arithmetic
    if share > 0:
        count = round(len(rows) * share / (1 - share))
        rows += drill_rows(drill_stream(config, count), [image for _, image in answer_items])
    return rows


def restatement_warmup(
    loaded: Any, answer_items: list[tuple[Record, Any]], config: Config, scratch: str, device: str, log: Log
) -> float:
    """Train ``loaded.model`` in place on restatement rows only for ``restate_warmup_steps`` steps
    (``batch_size`` rows each, constant learning rate); return the seconds it took.

    Inside the mix the tiny model never learns to copy a word from its prompt: teacher-forced on
    "the question asks for the value of the", the default base wrote the question's colour 29 times
    in 117 (its SFT model 35), about the share of the most common colour, so three of four chains
    went on to read the wrong bar or shapes. Trained on restatements alone from its random init it
    copies 108 of 116 after 200 steps and all of them after 300 (a phase change, as induction heads
    form); 2 or 4 restatement rows in each step of the mix did not get there (35 and 34 of 117).
    After 300 warm-up steps and the mix the base copies 100 of 117 (44-50 with half the warm-up's
    rows arithmetic drills, ``restate_warmup_arithmetic`` 0.5) and its caption loss is lower, but
    held-out accuracy did not move, direct or step by step, over two seeds (README). Off by default.
    """
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from vlthinker.training.common import progress_callback

    p = config.pretrain
    rows = warmup_rows(answer_items, config)
    for row in rows:
        row.pop("kind")
    trainer = SFTTrainer(
        model=loaded.model,
        args=_trainer_args(config, f"{scratch}/restate", device, warmup_phase=True),
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.processor,
        callbacks=[progress_callback("pretrain (restatements)", log, p.batch_size)],
        optimizers=(vision_scaled_optimizer(loaded.model, config), None),
    )
    trainer.remove_callback(PrinterCallback)
    started = time.monotonic()
    with quiet_logger("accelerate.accelerator"):
        trainer.train()
    return time.monotonic() - started


def score_arithmetic(loaded: Any, config: Config, images: list[Any]) -> float:
    """Share of right equations in the model's greedy answers to held-out arithmetic drills (each
    shown with one of ``images``, as in training); 0.0 when it writes none."""
    from vlthinker.backends.hf import SamplingParams, generate
    from vlthinker.model.arithmetic import drills, equation_accuracy

    p = config.pretrain
    held_out = drills(ARITHMETIC_EVAL_DRILLS, PRETRAIN_ARITHMETIC_SEED_OFFSET + p.seed, split="heldout")
    outputs = generate(
        loaded,
        [user_message(prompt) for prompt, _ in held_out],
        [images[i % len(images)] for i in range(len(held_out))],
        SamplingParams(max_new_tokens=ARITHMETIC_EVAL_TOKENS),
        batch_size=p.eval_batch_size,
    )
    correct, total = equation_accuracy([o[0] for o in outputs])
    return correct / total if total else 0.0


def read_cached(entry: Path) -> BaseReport | None:
    """A cache entry's report if the entry is complete and its weights match the recorded hash."""
    report_file = entry / REPORT_FILE
    weights = entry / "model.safetensors"
    if not report_file.is_file() or not weights.is_file():
        return None
    try:
        report = BaseReport.from_json(json.loads(report_file.read_text()))
    except (ValueError, TypeError, KeyError):
        return None
    if sha256_bytes(weights.read_bytes()) != report.model_sha256:
        return None
    return report


def pretrain_base(
    config: Config,
    output_dir: str | Path,
    cache_dir: str | Path | None = None,
    log: Log = print,
    force: bool = False,
) -> tuple[BaseReport, bool]:
    """Pretrain (or fetch from the cache) the base model into ``output_dir``; return (report, cached)."""
    output = Path(output_dir)
    key = cache_key(config)
    entry = Path(cache_dir) / "base" / key if cache_dir else None
    if not force:
        for candidate in (entry, output):
            if candidate is None:
                continue
            report = read_cached(candidate)
            if report is not None and report.cache_key == key:
                if candidate != output:
                    replace_dir(candidate, output)
                log(f"pretrain: cached base model {key} reused from {candidate}")
                return report, True
            if candidate == entry and candidate.exists():
                log(f"pretrain: cache entry {candidate} is incomplete or corrupted; rebuilding it")
        shipped = shipped_base(key) if config.pretrain.use_prebuilt else None
        if shipped is not None:
            shipped, report = shipped
            if entry is not None:
                replace_dir(shipped, entry)
            replace_dir(shipped, output)
            log(
                f"pretrain: base model {key} shipped with vlthinker reused ({describe_shipped(shipped)}); "
                "pretrain.use_prebuilt=false or --force pretrains it here"
            )
            return report, True
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        report = train_base(config, tmp, log)
        (tmp / REPORT_FILE).write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
        if entry is not None:
            replace_dir(tmp, entry)
        replace_dir(tmp, output, move=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report, False


def shipped_base(key: str, root: Path | None = None) -> tuple[Path, BaseReport] | None:
    """The directory and report of the base shipped with vlthinker for ``key``; None if none is shipped.

    A shipped base whose weights do not match its report is an error (a broken install), not a
    reason to spend half an hour pretraining without saying so.
    """
    directory = (PREBUILT_ROOT if root is None else root) / key
    if not directory.exists():
        return None
    report = read_cached(directory)
    if report is None or report.cache_key != key:
        raise ValueError(
            f"{directory}: the base model shipped with vlthinker is incomplete or its weights do not match "
            f"its {REPORT_FILE} (a damaged install?): reinstall vlthinker, or set pretrain.use_prebuilt=false "
            "to pretrain the base here"
        )
    return directory, report


def describe_shipped(directory: Path) -> str:
    """One line on how a shipped base was built (its provenance file), for the logs."""
    try:
        info = json.loads((directory / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return f"no {PROVENANCE_FILE}"
    commit = info.get("trained_at_commit")
    return (
        f"pretrained {info.get('built_at', '?')} at commit {commit[:7] if commit else '(not recorded)'}, "
        f"{info.get('steps')} steps in "
        f"{info.get('train_seconds', 0) / 60:.0f} min; see {directory / PROVENANCE_FILE}"
    )


def ship_base(
    model_dir: Path, report: BaseReport, provenance: dict[str, Any], root: Path | None = None
) -> Path:
    """Store a pretrained base in the package (``root/<cache key>``) with its provenance; return it.

    Other shipped bases are removed: the package carries one base, the default recipe's.
    """
    root = PREBUILT_ROOT if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ship-", dir=root))
    try:
        shutil.rmtree(staging)
        shutil.copytree(model_dir, staging)
        info = {
            **provenance,
            "cache_key": report.cache_key,
            "steps": report.steps,
            "train_seconds": round(report.train_seconds, 1),
            "model_sha256": report.model_sha256,
        }
        (staging / PROVENANCE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        target = swap_into_place(staging, root / report.cache_key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for other in root.iterdir():
        if other.is_dir() and other.name != report.cache_key:
            shutil.rmtree(other)
    return target


def format_report(report: BaseReport) -> str:
    lines = [
        f"base model {report.cache_key}: held-out accuracy {report.heldout_accuracy:.1%} "
        f"(boxed-format rate {report.format_rate:.1%}), caption loss {report.caption_loss:.4f}, "
        f"train loss {report.train_loss:.4f}",
        f"{'task':<15}{'n':>5}{'accuracy':>10}{'chance':>9}{'majority':>10}  above chance"
        "  (majority: each question type's most common training answer)",
    ]
    for task, score in report.per_task.items():
        lines.append(
            f"{task:<15}{score.n:>5}{score.accuracy:>10.1%}{score.chance:>9.1%}{score.majority:>10.1%}  "
            f"{'yes' if score.above_chance else 'no'}"
        )
    lines.append(f"families clearly above chance: {len(report.families_above_chance)}/{len(report.per_task)}")
    if report.arithmetic_accuracy is not None:
        lines.append(f"held-out arithmetic drills: {report.arithmetic_accuracy:.1%} of the equations right")
    return "\n".join(lines)
