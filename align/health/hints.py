"""What to try when a detector fires, in the flags of the algorithm that is running, and what
each detector saw, in words (for reports that explain an alarm, such as the quickstart's).

A hint names only flags the algorithm takes: KTO has no ``--rpo-alpha``, GRPO no
``--missing-eos-penalty``, PPO's policy rate is ``--actor-lr``.
"""

from __future__ import annotations

# detector -> algorithm -> hint; "*" is every algorithm not listed
_HINTS: dict[str, dict[str, str]] = {
    "nan": {
        "ppo": "lower --actor-lr/--critic-lr, keep --max-grad-norm above 0, normalise and clip "
               "the reward (--preset ppo-max), prefer --bf16 over --fp16",
        "*": "lower --learning-rate (by 10x or more), keep --max-grad-norm above 0 (1.0 is the "
             "default), prefer --bf16 over --fp16",
    },
    "repeater": {
        "ppo": "raise --kl-coef, add --missing-eos-penalty, lower --actor-lr",
        "grpo": "raise --beta, pass --mask-truncated-completions, lower --learning-rate",
        "rloo": "raise --beta, pass --mask-truncated-completions, lower --learning-rate",
        "*": "raise --beta, lower --learning-rate",
    },
    "mute": {
        "ppo": "raise --kl-coef, check that the reward does not favour short answers, lower "
               "--actor-lr",
        "*": "raise --beta, check that the reward does not favour short answers, lower "
             "--learning-rate",
    },
    "kl_blowup": {
        "ppo": "raise --kl-coef (or set --target-kl), lower --actor-lr",
        "*": "raise --beta, lower --learning-rate",
    },
    "likelihood_displacement": {
        "dpo": "mix in the SFT loss (--rpo-alpha 1.0) or lower --learning-rate",
        "cpo": "raise --cpo-alpha (the NLL term on the chosen answer) or lower --learning-rate",
        "simpo": "raise --cpo-alpha (the NLL term on the chosen answer) or lower "
                 "--learning-rate",
        "orpo": "lower --beta (more of the SFT loss against the odds ratio) or lower "
                "--learning-rate",
        "kto": "lower --learning-rate or raise --beta (KTO has no SFT term to mix in)",
        "*": "lower --learning-rate",
    },
    "kl_drift": {
        "ppo": "the policy moves away from the reference without earning reward. On SmolLM2 "
               "from its base model this was cut text that the reward model, reading it closed "
               "as a turn, could not tell from an ended answer; the default set fixed it: the "
               "turn-end reading (--reward-at-turn-end) with a missing-EOS penalty about the "
               "reward model's range between a poor and a good answer (--missing-eos-penalty, "
               "5.0 by default; 1.0 was too small), --lam 1.0, and below 1B parameters "
               "--actor-lr 3e-5 with --kl-coef 0.15 (the defaults there). From a model the "
               "reward model already scores near its best (SmolLM2's SFT stage) the policy "
               "drifts unless β holds it (at 3e-5 with β 0.05 that stage lost half its gold, "
               "with β 0.15 it gained): raise --kl-coef or lower --actor-lr; and check that the "
               "reward separates good from bad answers (its spread per batch)",
        "*": "the policy moves away from the reference without earning reward: check the "
             "reward's spread per batch, raise --beta, lower --learning-rate",
    },
    "critic_stuck": {
        "ppo": "advice only (--on-collapse does not act on it): on SmolLM2 the critic "
               "explained none of the returns in most steps of the run that worked as of those "
               "that failed; with --lam 1.0 (the default) it serves only as a baseline. If the "
               "reward does not rise either, make sure the reward model reads whole answers "
               "(--reward-at-turn-end, the default for chat prompts), then raise --critic-lr, "
               "add --critic-warmup-steps, or check where the value head starts (docs/ppo.md)",
        "*": "raise --critic-lr, add --critic-warmup-steps, or check where the value head "
             "starts (docs/ppo.md)",
    },
    "no_eos": {
        "ppo": "what made SmolLM2's answers end from its base model is the default set: the "
               "reward read at the turn end (--reward-at-turn-end, on for chat prompts) with a "
               "missing-EOS penalty about the reward model's range between a poor and a good "
               "answer (--missing-eos-penalty, 5.0 by default with the turn-end reading; 1.0 "
               "was too small: the run learned cut text), --lam 1.0, and an actor rate of "
               "3e-5 (the default below 1B parameters; 1e-5 did not teach stopping in 20 "
               "steps); a reward model on another scale needs the penalty scaled with it. Or "
               "raise --max-new-tokens, or start from an SFT model that stops",
        "*": "raise --max-completion-length, pass --mask-truncated-completions, or start from "
             "an SFT model that stops",
    },
    "tool_collapse": {
        "*": "check that the reward needs the tool (a reward that an answer without the tool "
             "also earns lets the policy drop it), raise --beta, lower --learning-rate, or start "
             "from an SFT model trained on tool transcripts (--chat-template chatml-tools)",
    },
    "tool_errors": {
        "*": "read the tool turns in the transcripts (align generate --tools ... --output "
             "FILE.jsonl): a tool that raises or hangs needs fixing (or a larger "
             "--tool-timeout); malformed calls or bad arguments from the model call for SFT on "
             "tool transcripts first, a lower --learning-rate or a higher --beta",
    },
}


def hint(detector: str, algo: str | None) -> str:
    """The hint for ``detector`` in ``algo``'s flags (the generic one for other algorithms)."""
    table = _HINTS[detector]
    return table.get(algo or "*", table["*"])


# detector -> what it saw, in words; the event's message has the numbers, hint() what to try
MEANING = {
    "repeater": "most answers ran to the token limit without ending, repeating themselves: "
                "the policy learnt that long answers score well, or forgot how to stop",
    "mute": "the answers shrank towards nothing: the policy found that saying little scores "
            "well",
    "kl_blowup": "the policy moved far from its reference model: its answers no longer look "
                 "like those of the model it started from, which is where a reward model is "
                 "most easily fooled",
    "nan": "a loss became NaN or infinite: training broke numerically",
    "tool_collapse": "the policy stopped calling its tools: it found answers without them that "
                     "score as well, or a tool failed so often that avoiding it paid",
    "tool_errors": "most tool calls failed: the tool is broken or too slow, or the policy "
                   "writes calls the tool cannot take",
    "likelihood_displacement": "the chosen answers became less likely, not more: the loss "
                               "widened the margin by pushing both answers of a pair down, which "
                               "moves probability to answers that are in neither (Razin et al. "
                               "2024)",
}
