"""Training infrastructure: jitted steps, accumulation, optimizer, train state, checkpoints, metrics, multi-host helpers."""
