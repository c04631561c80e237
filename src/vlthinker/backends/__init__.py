"""Generation backends: turn (messages, image) prompts into sampled or greedy completions."""
