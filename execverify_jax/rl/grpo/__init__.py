"""The GRPO trainer: rollout, update and the loop, over the tasks it trains on."""
