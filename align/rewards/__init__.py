"""Reward sources for online RL (GRPO, RLOO): built-in functions, user plugins, reward models.

Every reward function has TRL's signature ``f(prompts, completions, **columns) -> list[float |
None]``: one number per completion, ``None`` where the function does not apply (TRL skips it
when combining rewards). ``columns`` are the dataset's other columns (``solution``, ...) plus
what the trainer adds (``completion_ids``, ``trainer_state``, ``log_metric``).

- :mod:`align.rewards.builtin`  accuracy, format and length (import-light: no torch)
- :mod:`align.rewards.plugin`   ``--reward-fn file.py:function`` loaded by path, checked, guarded
- :mod:`align.rewards.sources`  the ordered list of reward sources and weights for a run
- :mod:`align.rewards.evaluate` mean reward of a policy on held-out prompts
"""
