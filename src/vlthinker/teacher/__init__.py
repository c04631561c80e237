"""Teachers that write reasoning chains for distillation.

`offline` holds the offline teacher: a scripted, seeded reasoner for the synthetic task families that
reads the exact caption and writes R1-style chains (with reflections, slips and variable length) so the
distillation filters have real work to do. Real recipes use an `openai` or `vllm` teacher.
"""
