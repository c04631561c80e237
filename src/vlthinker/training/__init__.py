"""Training steps: SFT (TRL SFTTrainer), RL data selection by pass rate, and GRPO (TRL GRPOTrainer).

* ``sft.train_sft`` — fine-tune on an SFT dataset (full or LoRA, vision tower/projector frozen).
* ``select.select_rl_data`` — pass rates under the SFT model, band filter, optional curriculum.
* ``rl.train_rl`` — GRPO with rewards from ``vlthinker.answers``.
* ``launch`` — re-run a step under ``accelerate launch`` when several processes are configured.

Every step checkpoints, resumes after an interruption, logs to MLflow and writes a standard
Hugging Face model directory atomically. Submodules import torch/transformers/trl lazily.
"""
