"""PPO checkpoints: exact weight round trips, complete only with their marker, never NaN."""

from __future__ import annotations

import pytest
import torch

from align.checkpoints import latest, read_marker
from align.ppo.checkpoint import NonFiniteWeights, load_checkpoint, save_checkpoint
from align.ppo.models import load_roles, trainable
from tests.ppo.conftest import ppo_config


def test_a_checkpoint_is_written_whole_with_its_marker(tiny_sft, tiny_rm, tmp_path):
    roles = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path))
    path = save_checkpoint(tmp_path, 2, roles, {"step": 2}, {}, {"config": {"algo": "ppo"}},
                           healthy=False)
    record = read_marker(path)
    assert record["step"] == 2 and record["healthy"] is False
    assert record["config"] == {"algo": "ppo"}
    assert {"actor/model.safetensors", "critic/model.safetensors", "optim.pt",
            "state.json"} <= set(record["files"])
    assert latest(tmp_path).step == 2 and latest(tmp_path, healthy=True) is None


def test_non_finite_weights_are_never_saved(tiny_sft, tiny_rm, tmp_path):
    roles = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path))
    with torch.no_grad():
        trainable(roles.actor)[0].fill_(float("nan"))
    with pytest.raises(NonFiniteWeights, match="not finite"):
        save_checkpoint(tmp_path, 4, roles, {"step": 4}, {})
    assert not any(tmp_path.glob("checkpoint-4*"))


@pytest.mark.parametrize("lora", [False, True])
def test_weights_state_and_rng_round_trip_exactly(tiny_sft, tiny_rm, tmp_path, lora):
    cfg = ppo_config(tiny_sft, tiny_rm, tmp_path, lora=lora)
    torch.manual_seed(0)
    roles = load_roles(cfg)
    with torch.no_grad():
        for model in (roles.actor, roles.critic):
            for p in trainable(model):
                p.add_(torch.randn_like(p))
    plain = {"step": 3, "anything": [1.5, "x"]}
    rng = torch.get_rng_state()
    path = save_checkpoint(tmp_path, 3, roles, plain, {"rng": rng})
    assert path.name == "checkpoint-3" and not (tmp_path / "checkpoint-3.tmp").exists()
    assert read_marker(path) is not None
    fresh = load_roles(cfg)
    state, tensors = load_checkpoint(path, fresh)
    assert state == plain and torch.equal(tensors["rng"], rng)
    for before, after in ((roles.actor, fresh.actor), (roles.critic, fresh.critic)):
        for p, q in zip(trainable(before), trainable(after)):
            assert torch.equal(p, q)
