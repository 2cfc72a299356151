"""PPO checkpoints: exact weight round trips, complete only with their marker, never NaN."""

from __future__ import annotations

import pytest
import torch

from align.checkpoints import latest, read_marker
from align.ppo.checkpoint import NonFiniteWeights, load_checkpoint, save_checkpoint
from align.ppo.dist import Dist
from align.ppo.models import load_roles
from tests.ppo.conftest import ppo_config

OWN = {"rng": torch.get_rng_state()}  # this process's state (rank-0.pt)


def test_a_checkpoint_is_written_whole_with_its_marker(tiny_sft, tiny_rm, tmp_path):
    roles = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path))
    path = save_checkpoint(tmp_path, 2, roles, {"step": 2}, {}, OWN, Dist(),
                           {"config": {"algo": "ppo"}}, healthy=False)
    record = read_marker(path)
    assert record["step"] == 2 and record["healthy"] is False
    assert record["config"] == {"algo": "ppo"}
    assert {"actor/model.safetensors", "critic/model.safetensors", "optim.pt",
            "state.json", "rank-0.pt"} <= set(record["files"])
    assert latest(tmp_path).step == 2 and latest(tmp_path, healthy=True) is None


def test_non_finite_weights_are_never_saved(tiny_sft, tiny_rm, tmp_path):
    roles = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path))
    with torch.no_grad():
        roles.model.trainable[0].fill_(float("nan"))
    with pytest.raises(NonFiniteWeights, match="not finite"):
        save_checkpoint(tmp_path, 4, roles, {"step": 4}, {}, OWN, Dist())
    assert not any(tmp_path.glob("checkpoint-4*"))


@pytest.mark.parametrize("flags", [{}, {"lora": True},
                                   {"lora": True, "critic_base": "reward-model"}])
def test_weights_state_and_rng_round_trip_exactly(tiny_sft, tiny_rm, tmp_path, flags):
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
    assert read_marker(path) is not None
    fresh = load_roles(cfg)
    state, tensors, mine = load_checkpoint(path, fresh, Dist())
    assert state == plain and torch.equal(tensors["x"], torch.ones(2))
    assert torch.equal(mine["rng"], own["rng"]) and mine["sampler"] == own["sampler"]
    for p, q in zip(roles.model.trainable, fresh.model.trainable):
        assert torch.equal(p, q)
