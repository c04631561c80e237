"""Default container images of the components (overridden per run from ``pipeline.images`` config)."""

CPU_IMAGE = "ghcr.io/vlthinker/vlthinker-cpu:0.1.0"
GPU_IMAGE = "ghcr.io/vlthinker/vlthinker-gpu:0.1.0"
