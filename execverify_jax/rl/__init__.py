"""execverify_jax.rl."""
