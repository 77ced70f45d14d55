"""Stage 1: production logs and feedback into the store."""
