"""align's own PPO engine (TRL 1.16 has none): config, pure losses, rollout, trainer, health."""
