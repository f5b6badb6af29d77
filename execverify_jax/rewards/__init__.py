"""Verifiable rewards (stage I white-box, stage II unit tests); see docs/REWARDS.md.

Data side: never imports jax/flax/optax/orbax. Entry point: `rewards.batch.Scorer`.
"""
