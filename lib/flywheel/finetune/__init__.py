"""Stage 3: train candidate small routers on the ground-truth train split."""
