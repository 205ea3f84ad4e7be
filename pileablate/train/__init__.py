"""Training: trainer loop, schedules, checkpoints, metrics, distributed set-up."""
