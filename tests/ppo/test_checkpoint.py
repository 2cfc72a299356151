"""Checkpoints: atomic directories, exact weight round trips, rotation that keeps a healthy one."""

from __future__ import annotations

import pytest
import torch

from align.ppo.checkpoint import checkpoint_steps, load_checkpoint, rotate, save_checkpoint
from align.ppo.models import load_roles
from align.runner import latest_checkpoint
from tests.ppo.conftest import ppo_config


def test_resume_ignores_half_written_checkpoints(tmp_path):
    for name in ("checkpoint-2", "checkpoint-4.tmp", "checkpoint-6.old", "checkpoint-x"):
        (tmp_path / name).mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    assert checkpoint_steps(tmp_path) == [2]


def test_rotate_keeps_the_last_healthy_checkpoint(tmp_path):
    for step in (2, 4, 6, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
    rotate(tmp_path, limit=2, keep=2)
    assert checkpoint_steps(tmp_path) == [2, 6, 8]
    rotate(tmp_path, limit=1, keep=None)
    assert checkpoint_steps(tmp_path) == [8]


@pytest.mark.parametrize("flags", [{}, {"lora": True},
                                   {"lora": True, "critic_base": "reward-model"}])
def test_weights_state_and_rng_round_trip_exactly(tiny_sft, tiny_rm, tmp_path, flags):
    from align.ppo.dist import Dist

    cfg = ppo_config(tiny_sft, tiny_rm, tmp_path, **flags)
    torch.manual_seed(0)
    roles = load_roles(cfg)
    with torch.no_grad():
        for p in roles.model.trainable:
            p.add_(torch.randn_like(p))
    plain = {"step": 3, "world": 1, "anything": [1.5, "x"]}
    own = {"rng": torch.get_rng_state(), "sampler": {"epoch": 1, "pos": 2}}
    path = save_checkpoint(tmp_path, 3, roles, plain, {"x": torch.ones(2)}, own, Dist())
    assert path.name == "checkpoint-3" and not (tmp_path / "checkpoint-3.tmp").exists()
    fresh = load_roles(cfg)
    state, tensors, mine = load_checkpoint(path, fresh, Dist())
    assert state == plain and torch.equal(tensors["x"], torch.ones(2))
    assert torch.equal(mine["rng"], own["rng"]) and mine["sampler"] == own["sampler"]
    for p, q in zip(roles.model.trainable, fresh.model.trainable):
        assert torch.equal(p, q)
