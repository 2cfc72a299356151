"""A tool in TRL's shape for the multi-turn PPO tests: the tiny model learns to call it."""


def double(n: int) -> int:
    """
    Doubles a number.

    Args:
        n: The number to double.
    """
    return 2 * n
