"""Host side: synthesis, sandbox, tracing, questions, loaders. Never imports jax/flax/optax/orbax."""
