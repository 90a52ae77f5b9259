"""Training: the per-run recipe, the Trainer wiring, and the experiment runner."""
