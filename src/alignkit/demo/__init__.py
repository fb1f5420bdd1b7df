"""A seeded toy assistant world: prompts, graded replies, a gold judge and simulated annotators."""
