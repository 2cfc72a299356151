"""PPOConfig: every PPO trick is one field with its default and where that default comes from.

Presets. ``--preset default`` keeps the ms-swift RLHF guide's settings (themselves TRL's old
PPOTrainer defaults) but for GAE λ 1 and the missing-EOS penalty, chosen on a real chat model
(docs/ppo.md, "Defaults on a real chat model"), ``--preset ppo-max`` turns on the set from "Secrets of RLHF" (Zheng et al.
2023) and ``--preset vanilla`` turns the tricks off (plain PPO of Schulman et al. 2017 on the
RM score). The fields a preset decides default to ``None``; ``__post_init__`` fills in the
preset's value only where the field is still ``None``, so a flag the user passed always wins
over the preset (the CLI builds this dataclass with the passed flags only). Each such field
declares its value under every preset next to its help (``presets=``), which the docs show.

This module imports nothing heavy (no torch): ``align --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from align.config import arg, validate_fields
from align.rewards.args import RewardArgs

PRESETS = ("default", "ppo-max", "vanilla")
KL_ESTIMATORS = ("k1", "k2", "k3")
ROLLOUT_ENGINES = ("hf", "vllm")
CRITIC_BASES = ("policy", "reward-model")

DEFAULT_PTX_COEF = 0.05  # OpenRLHF --ptx_coef default
# --missing-eos-penalty's default when the reward is read at the turn end (docs/ppo.md)
TURN_END_EOS_PENALTY = 5.0


@dataclass
class PPOConfig(RewardArgs):
    """PPO's flags; the rule-reward flags (--reward-funcs, --reward-fn, --reward-weights) are
    GRPO's, from :class:`align.rewards.args.RewardArgs`."""

    # --- presets and roles --------------------------------------------------------------------
    preset: str = arg(
        "default", "Trick set: default (ms-swift RLHF guide), ppo-max (Secrets of RLHF: + reward "
        "normalisation and clipping) or vanilla (no KL penalty, reward norm, value clip or "
        "advantage whitening). Flags you pass override the preset.",
        source="Zheng et al. 2023 (PPO-max)", choices=PRESETS)
    value_model: str | None = arg(
        None, "Critic initialisation: a sequence-classifier directory (default: --reward-model; "
        "its score head becomes the per-token value head).",
        source="Secrets of RLHF: critic from the RM", metavar="PATH")
    actor_lr: float | None = arg(
        None, "Actor learning rate (default: --learning-rate if given, else by the policy's "
        "size: 5e-7 from 5B parameters, 3e-6 from 1B, 3e-5 below (with a KL β of 0.15); x10 "
        "with LoRA, 1e-4 below 1B).",
        source="OpenRLHF (7B), TRL (1B), measured on SmolLM2-135M (docs/ppo.md, 'Defaults on "
               "a real chat model'); see align/ppo/plan.py",
        bounds="(0, inf)")
    critic_lr: float | None = arg(
        None, "Critic learning rate (default by the policy's size: 9e-6 from 1B parameters, "
        "2e-5 below; x10 with LoRA).", source="OpenRLHF (7B); measured on SmolLM2-135M",
        bounds="(0, inf)")
    critic_base: str | None = arg(
        None, "With --lora/--qlora, the base the critic's adapter sits on: policy (one base "
        "for actor, critic and reference; the reward model is its own copy, which "
        "--offload-reward-model can keep on CPU) or reward-model (the critic starts from the "
        "reward model's backbone, which doubles as the reward model with the adapter off). "
        "Default: policy.", source="align default (single-base layout)",
        choices=CRITIC_BASES)
    # --- rollout ------------------------------------------------------------------------------
    rollout_batch_size: int = arg(64, "Prompts sampled per PPO step (one rollout batch).",
                                  source="align default", bounds="[1, inf)")
    max_new_tokens: int = arg(128, "Longest sampled response in tokens.", source="align default",
                              bounds="[1, inf)")
    temperature: float = arg(1.0, "Sampling temperature (log-probs use the same temperature).",
                             source="ms-swift RLHF guide", bounds="(0, inf)")
    top_p: float = arg(1.0, "Nucleus sampling threshold (1.0: off, so samples follow the π "
                       "being optimised).", source="TRL PPOTrainer default", bounds="(0, 1]")
    local_rollout_forward_batch_size: int = arg(
        64, "Sequences per forward pass when generating and scoring a rollout.",
        source="ms-swift RLHF guide", bounds="[1, inf)")
    rollout_generate_batch_size: int | None = arg(
        None, "Prompts per generate call in a rollout (default: "
        "--local-rollout-forward-batch-size). Generation holds a KV cache but never the "
        "full-vocabulary logits of a scoring pass, so it usually fits many more sequences: "
        "raise it, up to --rollout-batch-size, for faster rollouts.", source="align default",
        bounds="[1, inf)")
    sort_by_length: bool = arg(
        True, "Give prompts of similar length to the same generate call, each call padded "
        "only to its own longest prompt (responses keep their prompts' order). Matters when a "
        "rollout takes more than one generate call; what is sampled per prompt is unchanged.",
        source="align default")
    compile_rollout: bool = arg(
        False, "Generate with a static KV cache, so that transformers compiles the decoding "
        "step (torch.compile, CUDA graphs). CUDA only; the first rollouts pay for the "
        "compilation.", source="align default (off: not yet measured)")
    rollout_engine: str = arg(
        "hf", "Rollout generator: hf (transformers generate). vllm is not implemented for PPO "
        "yet (GRPO and RLOO have --use-vllm).", source="align default",
        choices=ROLLOUT_ENGINES)
    # --- reward -------------------------------------------------------------------------------
    reward_at_turn_end: bool | None = arg(
        None, "Score each response as the reward model saw its training answers: its text "
        "closed by the tokens the chat template writes after an assistant message (ChatML: "
        "<|im_end|> and a newline; plain-text prompts: EOS), the score read at the last of "
        "them. Responses cut at --max-new-tokens are closed the same way, so the reward model "
        "judges their text instead of a mid-sentence position it never learned to score, but "
        "can no longer tell them from ended ones (--missing-eos-penalty marks them). Off "
        "(--no-reward-at-turn-end): the score is read at the response's last token (its EOS, "
        "or where it was cut). Default: on when the prompts are chat messages and the "
        "tokenizer has a chat template, off for plain-text prompts.",
        source="SmolLM2-135M real-model task (docs/ppo.md, 'Defaults on a real chat model'); "
               "OpenRLHF writes an EOS at the cut")
    missing_eos_penalty: float | None = arg(
        None, "Subtract this from the score of responses that stop without EOS, in the reward "
        "model's units; 0 is off. Default: 5.0 when the reward model reads responses closed "
        "as a turn (--reward-at-turn-end, on for chat prompts), where a cut answer would "
        "otherwise score as an ended one; 0 otherwise (a reward read at the cut, or rule "
        "rewards, sees the cut itself) and with --preset vanilla.",
        source="SmolLM2-135M real-model task: 1.0 let the policy earn reward with cut text, "
               "5.0 (about the reward model's range between a poor and a good answer) raised "
               "dev gold (docs/ppo.md, 'Defaults on a real chat model'); TRL / ms-swift have "
               "it off", bounds="[0, inf)",
        presets={"default": None, "ppo-max": None, "vanilla": 0.0})
    reward_norm: bool | None = arg(
        None, "Running mean/std normalisation of RM scores (default: off; on with --preset "
        "ppo-max).", source="Secrets of RLHF, sec. 5.3",
        presets={"default": False, "ppo-max": True, "vanilla": False})
    reward_clip: float | None = arg(
        None, "Clip (normalised) scores to [-c, c]; 0 is off (default: off; 10 with --preset "
        "ppo-max).", source="MOSS-RLHF --reward_clip",
        presets={"default": 0.0, "ppo-max": 10.0, "vanilla": 0.0}, bounds="[0, inf)")
    whiten_rewards: bool = arg(False, "Whiten the token rewards of each rollout batch "
                               "(scale only, mean kept).", source="ms-swift RLHF guide")
    # --- KL -----------------------------------------------------------------------------------
    kl_coef: float | None = arg(
        None, "Token-level KL penalty β against the reference (default: 0.15 for policies "
        "below 1B parameters with full fine-tuning, 0.05 otherwise; 0 with --preset vanilla). "
        "With --target-kl, the starting β.",
        source="ms-swift RLHF guide (0.05); SmolLM2-135M real-model task: 0.15 with --actor-lr "
               "3e-5 raised dev gold from the base model and from SFT, where 0.05 lost half the "
               "SFT stage's (docs/ppo.md, 'Defaults on a real chat model'); see align/ppo/plan.py",
        presets={"default": None, "ppo-max": None, "vanilla": 0.0}, bounds="[0, inf)")
    kl_estimator: str = arg(
        "k1", "KL estimator of the token penalty: k1 log-ratio, k2 squared, k3 exp-based.",
        source="Schulman 2020, 'Approximating KL divergence'", choices=KL_ESTIMATORS)
    target_kl: float = arg(
        0.0, "Adaptive KL: target KL in nats per response; 0 is off (the default: β stays "
        "fixed).", source="Ziegler et al. 2019, sec. 2.2", bounds="[0, inf)")
    kl_horizon: int = arg(10000, "Adaptive KL horizon in samples.",
                          source="Ziegler et al. 2019", bounds="[1, inf)")
    # --- advantages ---------------------------------------------------------------------------
    gamma: float = arg(1.0, "Discount factor.", source="ms-swift RLHF guide", bounds="[0, 1]")
    lam: float = arg(
        1.0, "GAE λ (1: the advantage is the return minus the value, which leans on the critic "
        "only as a baseline).",
        source="SmolLM2-135M real-model task, where the critic explained little of the returns "
               "in every run (docs/ppo.md, 'Defaults on a real chat model'); 0.95 before (ms-swift "
               "RLHF guide)", bounds="[0, 1]")
    whiten_advantages: bool | None = arg(
        None, "Whiten advantages over the rollout batch (default: on; off with --preset "
        "vanilla).", source="TRL PPOTrainer; Secrets of RLHF",
        presets={"default": True, "ppo-max": True, "vanilla": False})
    advantage_clip: float = arg(0.0, "Clip advantages to [-c, c] after whitening; 0 is off.",
                                source="MOSS-RLHF --advantage_clip (0.5 when used)",
                                bounds="[0, inf)")
    # --- losses -------------------------------------------------------------------------------
    cliprange: float = arg(0.2, "Clip range ε of the policy ratio.", source="ms-swift RLHF guide",
                           bounds="[0, inf)")
    dual_clip: float = arg(
        0.0, "Dual-clip bound c > 1 on the policy loss for negative advantages (e.g. 3.0); 0 "
        "is off.", source="Ye et al. 2020 (off by default)", bounds="0 or (1, inf)")
    cliprange_value: float | None = arg(
        None, "Clip range of the value update; 0 is off (default: 0.2; off with --preset "
        "vanilla).", source="ms-swift RLHF guide",
        presets={"default": 0.2, "ppo-max": 0.2, "vanilla": 0.0}, bounds="[0, inf)")
    vf_coef: float = arg(0.1, "Value-loss weight (the critic has its own optimizer, so this "
                         "scales its gradients before clipping).", source="ms-swift RLHF guide",
                         bounds="[0, inf)")
    entropy_coef: float = arg(0.0, "Entropy bonus weight.", source="Secrets of RLHF (off)",
                              bounds="[0, inf)")
    ptx_dataset: str | None = arg(
        None, "SFT/pretraining data (sft format) whose next-token loss is mixed into the actor "
        "loss (PPO-ptx).", source="Ouyang et al. 2022 (InstructGPT)", metavar="PATH")
    ptx_coef: float | None = arg(
        None, "Weight of the PTX loss (default: 0.05 when --ptx-dataset is given).",
        source="OpenRLHF --ptx_coef", bounds="[0, inf)")
    # --- optimisation -------------------------------------------------------------------------
    ppo_epochs: int = arg(4, "Passes over each rollout batch.", source="TRL PPOTrainer default",
                          bounds="[1, inf)")
    num_mini_batches: int = arg(
        1, "Mini-batches (optimizer steps) per pass; the rollout batch is shuffled each pass.",
        source="TRL PPOTrainer default", bounds="[1, inf)")
    critic_warmup_steps: int = arg(
        0, "PPO steps at the start where only the critic trains.", source="OpenRLHF",
        bounds="[0, inf)")
    # --- memory -------------------------------------------------------------------------------
    offload_reward_model: bool = arg(
        False, "Keep the reward model on CPU and move it to the GPU only to score.",
        source="OpenRLHF --ref_reward_offload")
    offload_ref_model: bool = arg(
        False, "Keep the reference on CPU and move it to the GPU only for its forward pass.",
        source="OpenRLHF --ref_reward_offload")

    def __post_init__(self) -> None:
        self.check_rewards()
        validate_fields(self)  # choices and bounds, before a preset fills what is still None
        for name, value in preset_values(self.preset).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.ptx_coef is None:
            self.ptx_coef = DEFAULT_PTX_COEF if self.ptx_dataset else 0.0
        self._check()

    def _check(self) -> None:
        """The rules that tie fields together (each number's own range is its ``bounds``)."""
        if self.rollout_engine == "vllm":
            raise ValueError("--rollout-engine vllm is not implemented for PPO yet: syncing the "
                             "actor's weights (LoRA included) into a vLLM engine needs a GPU to "
                             "build and test it. Use hf (raise --rollout-generate-batch-size; "
                             "--compile-rollout on CUDA), or GRPO/RLOO with --use-vllm")
        if self.rollout_batch_size % self.num_mini_batches:
            raise ValueError(f"--rollout-batch-size {self.rollout_batch_size} must be divisible "
                             f"by --num-mini-batches {self.num_mini_batches}")
        if self.target_kl and self.kl_coef == 0:
            raise ValueError("--target-kl adapts β from --kl-coef, which is 0; give --kl-coef > 0")
        if self.ptx_coef > 0 and not self.ptx_dataset:
            raise ValueError("--ptx-coef needs --ptx-dataset (the data of the PTX loss)")


def preset_values(preset: str) -> dict[str, Any]:
    """The fields a preset decides and their values under ``preset`` (from the fields'
    ``presets`` metadata: one place per default)."""
    return {f.name: f.metadata["presets"][preset] for f in fields(PPOConfig)
            if f.metadata.get("presets")}
