"""execverify_jax.model."""
