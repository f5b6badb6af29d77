"""execverify_jax.rewards."""
