"""Offline tokenizer for the tiny VLM: byte-level BPE trained with `tokenizers` on generated text.

Wrapped as a ``Qwen2Tokenizer`` with the Qwen special tokens, so the tiny model is a drop-in for the
real Qwen2.5-VL family; ``<think>``/``<answer>`` tags are single tokens. Byte-level BPE encodes any
text (no unknown tokens); the trained merges only make the task vocabulary short.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

QWEN_SPECIAL_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
REASONING_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"

# Qwen2.5-VL style chat template (no default system prompt, as the paper evaluates without one).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Phrases of R1-style reasoning traces, so traces tokenize compactly too.
REASONING_PHRASES = [
    "Let me think step by step.",
    "First, I look at the image.",
    "Okay, so the question asks",
    "Wait, let me check again.",
    "But wait, I should double-check.",
    "So the answer is",
    "Therefore, the final answer is",
    "Adding them up gives",
    "The difference between them is",
    "I count the shapes one by one.",
    "Hmm, that means",
    "Now I compare the values.",
    "Describe the image.",
    "Answer the question directly with the final answer in \\boxed{}.",
    "Think step by step inside <think> </think> tags, then give the final answer inside <answer> </answer> tags.",
]


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a byte-level BPE on ``corpus`` and wrap it as a Qwen2Tokenizer (deterministic)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    n_reserved = 1 + len(QWEN_SPECIAL_TOKENS) + len(REASONING_TAGS)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_reserved + 1,
        special_tokens=[PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer)
    model_state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model_state["vocab"],
        merges=merges,
        unk_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    tokenizer.add_tokens(REASONING_TAGS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
