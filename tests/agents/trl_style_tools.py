"""Tools and an environment written for TRL's GRPOTrainer (tools=[...], environment_factory=...),
in the shapes of TRL's documentation; align must use this file unchanged."""

import time


def multiply(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product of the two integers.
    """
    return a * b


async def async_add(a: float, b: float) -> float:
    """
    Adds two numbers, asynchronously.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def explode(reason: str) -> str:
    """
    Always fails.

    Args:
        reason: Why it fails.
    """
    raise RuntimeError(f"boom: {reason}")


def hang(seconds: float) -> str:
    """
    Sleeps for a long time.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return "woke up"


class WordleLikeEnv:
    """A guessing game with state across turns: the secret comes from the row."""

    def __init__(self):
        self.secret = None
        self.guesses = []

    def reset(self, **kwargs) -> str | None:
        self.secret = kwargs["secret"]
        self.guesses = []
        return f" (guess a number from 1 to {kwargs.get('high', 9)})"

    def guess(self, number: int) -> str:
        """
        Guess the secret number.

        Args:
            number: Your guess.

        Returns:
            Whether the guess is too low, too high, or correct.
        """
        self.guesses.append(number)
        if number < self.secret:
            return "too low"
        if number > self.secret:
            return "too high"
        return "correct"

    def get_reward(self) -> float:
        return 1.0 if self.guesses and self.guesses[-1] == self.secret else 0.0


class CounterEnv:
    def reset(self, **kwargs):
        self.n = 0

    def increment(self, by: int) -> str:
        """
        Adds to the counter.

        Args:
            by: How much to add.
        """
        self.n += by
        return str(self.n)
