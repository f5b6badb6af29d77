"""Applications built on the trainers: the CPU demo, held-out evaluation, difficulty filter, plots."""
