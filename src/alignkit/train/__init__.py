"""The training mechanics every recipe shares: run folder, batches, schedule, checkpoints, the loop."""
