"""Models: the offline tiny VLM, the one loader for local and hub models, and base pretraining."""
