"""Build the offline tiny Qwen2.5-VL model (random weights) and its processor.

The result is a standard Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer,
``preprocessor_config.json``, chat template) that ``AutoProcessor``/``AutoModelForImageTextToText``
load like any hub checkpoint. The same seed gives a byte-identical ``model.safetensors``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from vlthinker.config import TinyModelConfig
from vlthinker.fsutil import swap_into_place
from vlthinker.model.tokenizer import CHAT_TEMPLATE, REASONING_PHRASES, train_tokenizer

PATCH_SIZE = 14
MERGE_SIZE = 2
TOKENIZER_CORPUS_ITEMS = 600  # synthetic items whose text trains the tokenizer (fixed seed 0)


def tokenizer_corpus() -> list[str]:
    """Text the tokenizer is trained on: synthetic questions/captions/answers plus reasoning phrases.

    Fixed (seed 0), independent of the model seed, so every tiny model shares one vocabulary.
    """
    from vlthinker.sources.generate import ALL_TASKS, generate_items

    texts = list(REASONING_PHRASES)
    for record, _ in generate_items(TOKENIZER_CORPUS_ITEMS, seed=0, split="train", tasks=ALL_TASKS):
        texts.extend([record.question, record.caption or "", f"\\boxed{{{record.answer}}}"])
    return texts


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies into (temporal, height, width) as Qwen2.5-VL does (16/24/24)."""
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def build_tiny_model(spec: TinyModelConfig, seed: int, image_size: int = 112):
    """Return (model, tokenizer, image_processor) with deterministic random weights."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = train_tokenizer(tokenizer_corpus(), spec.vocab_size)
    token_id = tokenizer.convert_tokens_to_ids
    head_dim = spec.hidden_size // spec.num_attention_heads
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section(head_dim),
        },
        "bos_token_id": None,
        "eos_token_id": token_id("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_heads,
        "out_hidden_size": spec.hidden_size,
        "fullatt_block_indexes": [spec.vision_depth - 1],
        "window_size": image_size,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": 2,
        "initializer_range": spec.vision_initializer_range,
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [token_id("<|im_end|>"), token_id("<|endoftext|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)
    return model, tokenizer, image_processor


def save_processor_parts(output_dir: Path, tokenizer, image_processor) -> None:
    """Save a processor as hub Qwen2.5-VL repos do: tokenizer, preprocessor config, chat template."""
    tokenizer.save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    template = tokenizer.chat_template or CHAT_TEMPLATE
    (output_dir / "chat_template.jinja").write_text(template, encoding="utf-8")
    (output_dir / "processor_config.json").write_text(
        json.dumps({"processor_class": "Qwen2_5_VLProcessor"}, indent=2) + "\n", encoding="utf-8"
    )


def build_tiny(
    output_dir: str | Path, seed: int = 0, spec: TinyModelConfig | None = None, image_size: int = 112
):
    """Build and save the tiny VLM atomically (temp dir, then rename); return the directory."""
    spec = spec or TinyModelConfig()
    output = Path(output_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        model, tokenizer, image_processor = build_tiny_model(spec, seed, image_size)
        model.save_pretrained(tmp, safe_serialization=True)
        save_processor_parts(tmp, tokenizer, image_processor)
        info = {
            "kind": "vlthinker-tiny-vlm",
            "seed": seed,
            "image_size": image_size,
            "spec": spec.model_dump(),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        (tmp / "vlthinker_model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        swap_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output
