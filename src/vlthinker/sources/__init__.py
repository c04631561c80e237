"""Dataset sources: procedural synthetic visual-reasoning tasks with exact answers and captions."""
