"""PPOConfig: every PPO trick is one field with its default and where that default comes from.

Presets. ``--preset default`` keeps the ms-swift RLHF guide's settings (themselves TRL's old
PPOTrainer defaults), ``--preset ppo-max`` turns on the set from "Secrets of RLHF" (Zheng et al.
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

from align.config import arg, validate_choices

PRESETS = ("default", "ppo-max", "vanilla")
KL_ESTIMATORS = ("k1", "k2", "k3")
ROLLOUT_ENGINES = ("hf", "vllm")
CRITIC_BASES = ("policy", "reward-model")

DEFAULT_PTX_COEF = 0.05  # OpenRLHF --ptx_coef default


@dataclass
class PPOConfig:
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
        "size: 5e-7 from 5B parameters, 3e-6 from 1B, 1e-5 below; x10 with LoRA).",
        source="OpenRLHF (7B), TRL (1B), measured on SmolLM2-135M; see align/ppo/plan.py")
    critic_lr: float | None = arg(
        None, "Critic learning rate (default by the policy's size: 9e-6 from 1B parameters, "
        "2e-5 below; x10 with LoRA).", source="OpenRLHF (7B); measured on SmolLM2-135M")
    critic_base: str | None = arg(
        None, "With --lora/--qlora, the base the critic's adapter sits on: policy (one base "
        "for actor, critic and reference; the reward model is its own copy, which "
        "--offload-reward-model can keep on CPU) or reward-model (the critic starts from the "
        "reward model's backbone, which doubles as the reward model with the adapter off). "
        "Default: policy.", source="align default (single-base layout)",
        choices=CRITIC_BASES)
    # --- rollout ------------------------------------------------------------------------------
    rollout_batch_size: int = arg(64, "Prompts sampled per PPO step (one rollout batch).",
                                  source="align default")
    max_new_tokens: int = arg(128, "Longest sampled response in tokens.", source="align default")
    temperature: float = arg(1.0, "Sampling temperature (log-probs use the same temperature).",
                             source="ms-swift RLHF guide")
    top_p: float = arg(1.0, "Nucleus sampling threshold (1.0: off, so samples follow the π "
                       "being optimised).", source="TRL PPOTrainer default")
    local_rollout_forward_batch_size: int = arg(
        64, "Sequences per forward pass when generating and scoring a rollout.",
        source="ms-swift RLHF guide")
    rollout_generate_batch_size: int | None = arg(
        None, "Prompts per generate call in a rollout (default: "
        "--local-rollout-forward-batch-size). Generation holds a KV cache but never the "
        "full-vocabulary logits of a scoring pass, so it usually fits many more sequences: "
        "raise it, up to --rollout-batch-size, for faster rollouts.", source="align default")
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
    reward_at_turn_end: bool = arg(
        False, "Score each response as the reward model saw its training answers: its text "
        "closed by the tokens the chat template writes after an assistant message (ChatML: "
        "<|im_end|> and a newline; plain-text prompts: EOS), the score read at the last of "
        "them. Responses cut at --max-new-tokens are closed the same way, so the reward model "
        "judges their text instead of a mid-sentence position it never learned to score, but "
        "can no longer tell them from ended ones: pair it with --missing-eos-penalty. Off: "
        "the score is read at the response's last token (its EOS, or where it was cut).",
        source="align default (off: TRL's old PPOTrainer; OpenRLHF writes an EOS at the cut)")
    missing_eos_penalty: float | None = arg(
        None, "Subtract this from the score of responses that stop without EOS (e.g. 1.0).",
        source="TRL / ms-swift (off by default)")
    reward_norm: bool | None = arg(
        None, "Running mean/std normalisation of RM scores (default: off; on with --preset "
        "ppo-max).", source="Secrets of RLHF, sec. 5.3",
        presets={"default": False, "ppo-max": True, "vanilla": False})
    reward_clip: float | None = arg(
        None, "Clip (normalised) scores to [-c, c]; 0 is off (default: off; 10 with --preset "
        "ppo-max).", source="MOSS-RLHF --reward_clip",
        presets={"default": 0.0, "ppo-max": 10.0, "vanilla": 0.0})
    whiten_rewards: bool = arg(False, "Whiten the token rewards of each rollout batch "
                               "(scale only, mean kept).", source="ms-swift RLHF guide")
    # --- KL -----------------------------------------------------------------------------------
    kl_coef: float | None = arg(
        None, "Token-level KL penalty β against the reference (default: 0.05; 0 with --preset "
        "vanilla). With --target-kl, the starting β.", source="ms-swift RLHF guide",
        presets={"default": 0.05, "ppo-max": 0.05, "vanilla": 0.0})
    kl_estimator: str = arg(
        "k1", "KL estimator of the token penalty: k1 log-ratio, k2 squared, k3 exp-based.",
        source="Schulman 2020, 'Approximating KL divergence'", choices=KL_ESTIMATORS)
    target_kl: float | None = arg(
        None, "Adaptive KL: target KL in nats per response (off by default: β stays fixed).",
        source="Ziegler et al. 2019, sec. 2.2")
    kl_horizon: int = arg(10000, "Adaptive KL horizon in samples.",
                          source="Ziegler et al. 2019")
    # --- advantages ---------------------------------------------------------------------------
    gamma: float = arg(1.0, "Discount factor.", source="ms-swift RLHF guide")
    lam: float = arg(0.95, "GAE λ.", source="ms-swift RLHF guide")
    whiten_advantages: bool | None = arg(
        None, "Whiten advantages over the rollout batch (default: on; off with --preset "
        "vanilla).", source="TRL PPOTrainer; Secrets of RLHF",
        presets={"default": True, "ppo-max": True, "vanilla": False})
    advantage_clip: float = arg(0.0, "Clip advantages to [-c, c] after whitening; 0 is off.",
                                source="MOSS-RLHF --advantage_clip (0.5 when used)")
    # --- losses -------------------------------------------------------------------------------
    cliprange: float = arg(0.2, "Clip range ε of the policy ratio.", source="ms-swift RLHF guide")
    dual_clip: float | None = arg(
        None, "Dual-clip bound c > 1 on the policy loss for negative advantages (e.g. 3.0).",
        source="Ye et al. 2020")
    cliprange_value: float | None = arg(
        None, "Clip range of the value update; 0 is off (default: 0.2; off with --preset "
        "vanilla).", source="ms-swift RLHF guide",
        presets={"default": 0.2, "ppo-max": 0.2, "vanilla": 0.0})
    vf_coef: float = arg(0.1, "Value-loss weight (the critic has its own optimizer, so this "
                         "scales its gradients before clipping).", source="ms-swift RLHF guide")
    entropy_coef: float = arg(0.0, "Entropy bonus weight.", source="Secrets of RLHF (off)")
    ptx_dataset: str | None = arg(
        None, "SFT/pretraining data (sft format) whose next-token loss is mixed into the actor "
        "loss (PPO-ptx).", source="Ouyang et al. 2022 (InstructGPT)", metavar="PATH")
    ptx_coef: float | None = arg(
        None, "Weight of the PTX loss (default: 0.05 when --ptx-dataset is given).",
        source="OpenRLHF --ptx_coef")
    # --- optimisation -------------------------------------------------------------------------
    ppo_epochs: int = arg(4, "Passes over each rollout batch.", source="TRL PPOTrainer default")
    num_mini_batches: int = arg(
        1, "Mini-batches (optimizer steps) per pass; the rollout batch is shuffled each pass.",
        source="TRL PPOTrainer default")
    critic_warmup_steps: int = arg(
        0, "PPO steps at the start where only the critic trains.", source="OpenRLHF")
    # --- memory -------------------------------------------------------------------------------
    offload_reward_model: bool = arg(
        False, "Keep the reward model on CPU and move it to the GPU only to score.",
        source="OpenRLHF --ref_reward_offload")
    offload_ref_model: bool = arg(
        False, "Keep the reference on CPU and move it to the GPU only for its forward pass.",
        source="OpenRLHF --ref_reward_offload")

    def __post_init__(self) -> None:
        validate_choices(self)
        for name, value in preset_values(self.preset).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.ptx_coef is None:
            self.ptx_coef = DEFAULT_PTX_COEF if self.ptx_dataset else 0.0
        self._check()

    def _check(self) -> None:
        positive = ("rollout_batch_size", "max_new_tokens", "local_rollout_forward_batch_size",
                    "ppo_epochs", "num_mini_batches", "kl_horizon")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        non_negative = ("kl_coef", "reward_clip", "advantage_clip", "cliprange",
                        "cliprange_value", "vf_coef", "entropy_coef", "ptx_coef",
                        "critic_warmup_steps")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if self.rollout_generate_batch_size is not None and self.rollout_generate_batch_size <= 0:
            raise ValueError("--rollout-generate-batch-size must be positive")
        if self.rollout_engine == "vllm":
            raise ValueError("--rollout-engine vllm is not implemented for PPO yet: syncing the "
                             "actor's weights (LoRA included) into a vLLM engine needs a GPU to "
                             "build and test it. Use hf (raise --rollout-generate-batch-size; "
                             "--compile-rollout on CUDA), or GRPO/RLOO with --use-vllm")
        if self.rollout_batch_size % self.num_mini_batches:
            raise ValueError(f"--rollout-batch-size {self.rollout_batch_size} must be divisible "
                             f"by --num-mini-batches {self.num_mini_batches}")
        if self.temperature <= 0:
            raise ValueError("--temperature must be > 0 (PPO samples; greedy has no log-probs "
                             "to optimise)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("--top-p must be in (0, 1]")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.lam <= 1.0:
            raise ValueError("--gamma and --lam must be in [0, 1]")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"--dual-clip must be > 1 (e.g. 3.0), got {self.dual_clip}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError("--target-kl must be > 0")
        if self.target_kl is not None and self.kl_coef == 0:
            raise ValueError("--target-kl adapts β from --kl-coef, which is 0; give --kl-coef > 0")
        if self.ptx_coef > 0 and not self.ptx_dataset:
            raise ValueError("--ptx-coef needs --ptx-dataset (the data of the PTX loss)")
        for name in ("actor_lr", "critic_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0")


def preset_values(preset: str) -> dict[str, Any]:
    """The fields a preset decides and their values under ``preset`` (from the fields'
    ``presets`` metadata: one place per default)."""
    return {f.name: f.metadata["presets"][preset] for f in fields(PPOConfig)
            if f.metadata.get("presets")}
