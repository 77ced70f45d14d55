"""Stage 2: why were users unhappy, expert review, and the ground-truth dataset."""
