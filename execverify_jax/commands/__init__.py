"""execverify_jax.commands."""
