"""The single-base LoRA layout (actor and critic adapters on the policy's base, reference =
adapters off) computes the same first PPO step as the layouts with separate models.

The reward model here is the SFT policy's own backbone with a trained score head, so that the
critic starts from the same function in every layout: in full fine-tuning and with the critic
on the reward model's base it is that classifier; on the shared base it is the policy's
backbone with the reward model's score head copied into the value head. LoRA adapters start
as the identity (B = 0), so before the first optimizer step every layout holds the same
actor, reference, critic and reward model, samples the same responses and computes the same
losses (one PPO epoch: every logged loss is computed before any update).
"""

from __future__ import annotations

import pytest

from align.metrics import read_metrics
from tests.conftest import run_cli
from tests.ppo.test_e2e import ppo_args, timing


@pytest.fixture(scope="module")
def rm_on_policy_backbone(tiny_sft, tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.ppo.conftest import _train_preference_rm

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_sft, num_labels=1)
    tok = AutoTokenizer.from_pretrained(tiny_sft)
    model.config.pad_token_id = tok.pad_token_id
    model.model.requires_grad_(False)  # train the head only: the backbone stays the policy's
    _train_preference_rm(model, tok, steps=20)
    out = tmp_path_factory.mktemp("rm_on_policy")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


LAYOUTS = {"full": [], "lora-rm-base": ["--lora", "--critic-base", "reward-model"],
           "lora-shared": ["--lora"]}


def test_first_step_losses_equal_across_layouts(tmp_path, capsys, tiny_sft,
                                                rm_on_policy_backbone, prompt_files):
    rows = {}
    for name, flags in LAYOUTS.items():
        out = tmp_path / name
        code, stdout, err = run_cli(ppo_args(tiny_sft, rm_on_policy_backbone, prompt_files[0],
                                             out, "--max-steps", "1", "--ppo-epochs", "1",
                                             "--num-mini-batches", "1", "--actor-lr", "1e-3",
                                             # one β for all (its default differs: 0.15 for
                                             # full fine-tuning below 1B, 0.05 with LoRA)
                                             "--kl-coef", "0.05",
                                             "--save-steps", "100", *flags), capsys)
        assert code == 0, err
        rows[name] = read_metrics(out)[0]
    assert "value head (the reward model's score head" in stdout  # the plan says where it starts
    full = rows["full"]
    for name in ("lora-rm-base", "lora-shared"):
        for key in (k for k in full if not timing(k) and not k.startswith(("grad/", "lr/"))):
            assert rows[name][key] == pytest.approx(full[key], rel=1e-4, abs=1e-5), (name, key)
    assert full["loss/value"] > 0 and full["loss/policy"] != 0
