"""The one loader for every model: a local directory (the tiny VLM, our checkpoints) or a hub id.

Both go through ``AutoProcessor``/``AutoModelForImageTextToText`` with the same arguments. Loading
never runs code shipped with a model (``trust_remote_code`` is off unless the config turns it on)
and reads weights only from safetensors (``use_safetensors=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlthinker.errors import VLThinkerError


class ModelLoadError(VLThinkerError):
    """A model or processor could not be loaded."""


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    ref: str

    @property
    def tokenizer(self):
        return self.processor.tokenizer


def resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_processor(ref: str | Path, *, trust_remote_code: bool = False, min_pixels=None, max_pixels=None):
    from transformers import AutoProcessor

    from vlthinker.model.compat import install_video_processor_shim

    install_video_processor_shim()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if min_pixels is not None:
        kwargs["min_pixels"] = min_pixels
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    try:
        processor = AutoProcessor.from_pretrained(str(ref), **kwargs)
    except OSError as exc:
        raise ModelLoadError(_not_found_message(ref, exc)) from None
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(
    ref: str | Path,
    *,
    trust_remote_code: bool = False,
    dtype: str = "auto",
    device: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> LoadedModel:
    """Load model + processor from a local directory or a hub id, the same way for both."""
    from transformers import AutoModelForImageTextToText

    device = device or default_device()
    processor = load_processor(
        ref, trust_remote_code=trust_remote_code, min_pixels=min_pixels, max_pixels=max_pixels
    )
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            str(ref),
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=resolve_dtype(dtype, device),
        )
    except OSError as exc:
        raise ModelLoadError(_not_found_message(ref, exc)) from None
    model.to(device)
    model.eval()
    return LoadedModel(model=model, processor=processor, ref=str(ref))


def _not_found_message(ref: str | Path, exc: Exception) -> str:
    path = Path(str(ref))
    if path.is_dir() and not any(path.glob("*.safetensors")):
        return f"model {str(ref)!r}: no *.safetensors weights (weights are read from safetensors only, never pickles)"
    if path.exists():
        return f"model {str(ref)!r}: the directory could not be loaded as a model: {exc}"
    return (
        f"model {str(ref)!r}: not a local directory, and it could not be fetched from the Hugging Face hub "
        f"(offline, or the id does not exist): {str(exc).splitlines()[0]}"
    )


def save_processor(processor, output_dir: str | Path) -> None:
    """Save a processor; without a video processor (no torchvision) save its parts as hub repos do."""
    output = Path(output_dir)
    if getattr(processor, "video_processor", "absent") is None:
        from vlthinker.model.tiny import save_processor_parts

        save_processor_parts(output, processor.tokenizer, processor.image_processor)
    else:
        processor.save_pretrained(output)


def save_model(model, processor, output_dir: str | Path) -> Path:
    """Write a standard Hugging Face model directory (safetensors weights + processor)."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    save_processor(processor, output)
    return output
