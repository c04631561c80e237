"""Generation backends: turn (messages, image) prompts into sampled or greedy completions.

``make_backend(BackendConfig(kind=...))`` gives an ``hf``, ``vllm`` or ``openai`` backend behind the
one ``Backend`` interface; see ``base`` for the prompt format and the all-or-nothing contract.
"""

from vlthinker.backends.base import (
    Backend,
    BackendConfig,
    BackendError,
    GenerationRequest,
    Prompt,
    SamplingParams,
    make_backend,
)

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendError",
    "GenerationRequest",
    "Prompt",
    "SamplingParams",
    "make_backend",
]
