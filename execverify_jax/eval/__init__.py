"""execverify_jax.eval."""
