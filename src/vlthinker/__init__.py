"""vlthinker: iterative SFT + GRPO self-improvement of vision-language models (OpenVLThinker)."""

__version__ = "0.1.0"
