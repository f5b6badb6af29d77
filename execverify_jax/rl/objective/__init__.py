"""The GRPO objective: advantages, policy loss, KL, aggregation, and its config (pure JAX)."""
