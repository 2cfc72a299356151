"""Training health: rollout statistics, collapse detectors, and what to do when one fires.

One package shared by PPO, GRPO/RLOO and the DPO family. The collapse modes come from the seeds
("Secrets of RLHF"; the RM-score-vs-quality article): a model that never stops (*repeater*),
one that answers with nothing (*mute*), a policy running away from its reference (*KL
blow-up*), numerical failure (*NaN*), and for offline preference losses the chosen answers'
likelihood falling while the margin grows (*likelihood displacement*, Razin et al. 2024).

- :mod:`~align.health.args`: the flags (``--on-collapse``, thresholds);
- :mod:`~align.health.detectors`: the detectors as pure functions of one step's metrics;
- :mod:`~align.health.monitor`: streaks, events, the action (warn, stop, rollback);
- :mod:`~align.health.hints`: what to try, in the running algorithm's flags;
- :mod:`~align.health.rollback`: the one rollback rule (which checkpoint, which LR) and the
  NaN stop;
- :mod:`~align.health.driver`: the one driver that carries out the action (set broken
  checkpoints aside, roll back or stop) for PPO and the TRL trainers, through a small adapter;
- :mod:`~align.health.nonfinite`: NaN/inf weights, checked before every save;
- :mod:`~align.health.trainer`, :mod:`~align.health.online`: the TRL trainers' callbacks and
  GRPO/RLOO's canonical metric names.
"""

from align.health.args import ON_COLLAPSE, HealthArgs
from align.health.detectors import repeated_ngram_frac, rollout_stats
from align.health.monitor import CollapseStop, HealthEvent, HealthMonitor, health_metrics

__all__ = ["ON_COLLAPSE", "HealthArgs", "repeated_ngram_frac", "rollout_stats", "CollapseStop",
           "HealthEvent", "HealthMonitor", "health_metrics"]
