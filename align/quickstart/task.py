"""The quickstart's synthetic task and its hidden gold reward.

Prompts ask the model to describe a topic ("Describe the sea."). The SFT data answers in a
fixed shape, "The sea is calm, grim and warm.", with 1-4 adjectives drawn from a pleasant and
an unpleasant list at a random mix, so the SFT policy learns to answer but is mediocre.

The gold reward stands in for a human's judgement and is hidden from training: preference
labels come from it with rater noise, and a reward model learns it from those labels only.

    gold = (#pleasant - #unpleasant) / #adjectives            in [-1, 1]
           - 0.25 per adjective beyond 3                       (wordiness)
           - 0.05 per word beyond 12                           (rambling)
           - 1    if the topic is not named                    (off-topic)
           -1 for an empty answer, -0.5 for one with no adjective; clipped to [-2, 1]

The best answer names the topic with one to three pleasant adjectives (gold 1.0). The
simulated raters who label pairs judge by gold, with noise and a mild bias for longer answers
(as human raters have); a reward model learns that bias too, so an optimiser without a KL
leash can raise its score with long lists that gold penalises: the over-optimisation lesson.
The gold reward scores free text too, so it also applies to a real chat model's answers.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

TOPICS = ("sea", "city", "forest", "music", "garden", "river", "morning", "market", "winter",
          "village")
PLEASANT = ("lovely", "bright", "warm", "calm", "happy", "kind", "fresh", "sweet", "gentle",
            "golden")
UNPLEASANT = ("dull", "cold", "grim", "sad", "ugly", "harsh", "dirty", "noisy", "bleak", "awful")
TEMPLATES = ("Describe the {topic}.", "Tell me about the {topic}.", "What is the {topic} like?")
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Prompt:
    topic: str
    template: int

    @property
    def text(self) -> str:
        return TEMPLATES[self.template].format(topic=self.topic)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.text}]


def all_prompts() -> list[Prompt]:
    return [Prompt(t, i) for t in TOPICS for i in range(len(TEMPLATES))]


def split_prompts(seed: int, n_eval: int = 6) -> tuple[list[Prompt], list[Prompt]]:
    """Train and held-out prompts: held-out (topic, template) pairs never appear in training,
    but every topic and template does, so held-out prompts are new combinations."""
    rng = random.Random(seed)
    prompts = all_prompts()
    while True:
        rng.shuffle(prompts)
        held, train = prompts[:n_eval], prompts[n_eval:]
        if {p.topic for p in train} == set(TOPICS) and \
                {p.template for p in train} == set(range(len(TEMPLATES))):
            return train, held


def answer(topic: str, adjectives: list[str]) -> str:
    """The SFT answer shape: 'The sea is calm, grim and warm.'"""
    tail = adjectives[0] if len(adjectives) == 1 else \
        ", ".join(adjectives[:-1]) + " and " + adjectives[-1]
    return f"The {topic} is {tail}."


def sft_answer(rng: random.Random, topic: str) -> str:
    """A mediocre demonstration: a random share of pleasant adjectives, 1-4 of them."""
    p_pleasant = rng.uniform(0.15, 0.65)
    n = rng.randint(1, 4)
    adjs = [rng.choice(PLEASANT) if rng.random() < p_pleasant else rng.choice(UNPLEASANT)
            for _ in range(n)]
    return answer(topic, adjs)


def gold_reward(topic: str, response: str) -> float:
    """The hidden gold reward of one response (see the module docstring)."""
    words = _WORD.findall(response.lower())
    if not words:
        return -1.0
    adjs = [w for w in words if w in PLEASANT or w in UNPLEASANT]
    if adjs:
        score = sum(1 if a in PLEASANT else -1 for a in adjs) / len(adjs)
        score -= 0.25 * max(0, len(adjs) - 3)
    else:
        score = -0.5
    score -= 0.05 * max(0, len(words) - 12)
    if topic not in words:
        score -= 1.0
    return max(-2.0, min(1.0, score))


RATER_TEMPERATURE = 0.25  # Bradley-Terry noise: a 0.25 gold gap is chosen 73% of the time
RATER_LENGTH_BIAS = 0.1  # gold-equivalent bonus per extra word (raters favour longer answers)


def word_count(text: str) -> int:
    return len(_WORD.findall(text.lower()))


def noisy_preference(rng: random.Random, gold_a: float, gold_b: float, words_a: int = 0,
                     words_b: int = 0) -> bool:
    """A human-like rater; True when answer a is chosen over b.

    Raters judge by the gold reward, with Bradley-Terry noise (close calls are often flipped:
    raters disagree) and a mild preference for longer answers, as human raters show
    (Singhal et al. 2023, "A Long Way to Go: Investigating Length Correlations in RLHF").
    The reward model inherits that bias; gold does not share it (it penalises wordiness),
    which is what an optimiser without a KL leash exploits (--overoptimization)."""
    gap = gold_a - gold_b + RATER_LENGTH_BIAS * (words_a - words_b)
    p_a = 1.0 / (1.0 + math.exp(-gap / RATER_TEMPERATURE))
    return rng.random() < p_a


def corpus_texts() -> list[str]:
    """Every word the task uses, for training the quickstart tokenizer."""
    rng = random.Random(0)
    texts = [f"<|im_start|>user\n{p.text}<|im_end|>\n<|im_start|>assistant\n"
             f"{sft_answer(rng, p.topic)}<|im_end|>\n" for p in all_prompts() for _ in range(20)]
    texts += [" ".join(PLEASANT + UNPLEASANT + TOPICS)] * 20
    return texts
