"""Thresholds of the validation suites: one small pydantic model with defaults that suit real data.

Everything a suite compares against lives here, so the main config can carry it unchanged and a
recipe can tighten it. Defaults are generous on purpose: they reject broken or absurd data, not
unusual-but-valid data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["source", "captioned", "sft", "rl", "eval"]
KINDS: tuple[str, ...] = ("source", "captioned", "sft", "rl", "eval")

DEFAULT_REFLECTION_MARKERS = ("Wait,", "But wait,", "But the question")


class ValidationConfig(BaseModel):
    """Parameters of every suite (image bounds, word bounds, markers, hash distances)."""

    model_config = ConfigDict(extra="forbid")

    min_records: int = Field(default=1, ge=0, description="a dataset with fewer records fails")
    image_min_side: int = Field(default=8, ge=1, description="smallest allowed width or height (px)")
    image_max_side: int = Field(default=8192, ge=1, description="largest allowed width or height (px)")
    image_max_aspect_ratio: float = Field(
        default=200.0, ge=1.0, description="long side / short side (Qwen2.5-VL refuses more than 200)"
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="decompression-bomb guard: width*height above this is refused before decoding",
    )
    max_image_bytes: int = Field(default=64 * 2**20, ge=1, description="largest image file read (bytes)")
    caption_min_words: int = Field(default=3, ge=1)
    caption_max_words: int = Field(default=1000, ge=1)
    trace_min_words: int = Field(default=1, ge=0, description="words of the <think> text")
    trace_max_words: int = Field(default=500, ge=1, description="paper: traces under 500 words")
    reflection_markers: list[str] = Field(default_factory=lambda: list(DEFAULT_REFLECTION_MARKERS))
    phash_max_distance: int = Field(
        default=48,
        ge=0,
        le=255,
        description="perceptual match: largest per-cell colour difference (0-255) of two 16x16 thumbnails"
        " (re-encoded copies measured <= 40, different synthetic pictures >= 69)",
    )
    min_task_share: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="warn when a task holds less than this fraction of a uniform share of the records",
    )
    example_count: int = Field(default=20, ge=1, le=1000, description="failing examples kept per rule")

    @model_validator(mode="after")
    def _ordered(self) -> ValidationConfig:
        pairs = [
            ("image_min_side", "image_max_side"),
            ("caption_min_words", "caption_max_words"),
            ("trace_min_words", "trace_max_words"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) is above {high} ({getattr(self, high)})")
        if any(not marker.strip() for marker in self.reflection_markers):
            raise ValueError("reflection_markers must not contain empty strings")
        return self
