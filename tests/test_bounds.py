"""One way to bound a number: every numeric flag declares its allowed values with
``arg(bounds=...)`` (checked by align.config.validate_fields, printed in the docs' flag tables),
and "off" is 0 for a number that switches a trick on."""

from __future__ import annotations

import dataclasses

import pytest

from align.config import check_number, parse_bounds
from align.options import field_types
from align.registry import ALGOS

# numeric flags with no range to declare, and why
UNBOUNDED = {"simpo_gamma": "SimPO's target margin γ: any real number"}


def numeric_fields():
    seen = {}
    for spec in ALGOS.values():
        for cls in spec.groups().values():
            types = field_types(cls)
            for f in dataclasses.fields(cls):
                if types[f.name] in (int, float):
                    seen[f.name] = f
    return seen


def test_every_numeric_flag_declares_its_bounds():
    missing = sorted(name for name, f in numeric_fields().items()
                     if not f.metadata.get("bounds") and name not in UNBOUNDED)
    assert not missing, f"declare arg(bounds=...) for {missing}"


def test_no_config_checks_a_range_by_hand():
    """Ranges live in the declarations, not in __post_init__ (their docs would miss them)."""
    import inspect
    import re

    for spec in ALGOS.values():
        for cls in spec.groups().values():
            source = "".join(inspect.getsource(k) for k in cls.__mro__
                             if k.__module__.startswith("align") and "__post_init__" in vars(k))
            hand = re.findall(r"must be (?:positive|>=? ?\d|at least|in [\[(])", source)
            assert not hand, f"{cls.__name__} checks a range by hand: {hand}"


def test_off_is_zero_for_the_trick_switches():
    from align.ppo.config import PPOConfig

    cfg = PPOConfig(preset="vanilla")
    for name in ("dual_clip", "target_kl", "missing_eos_penalty", "advantage_clip",
                 "reward_clip", "cliprange_value"):
        assert getattr(cfg, name) == 0.0, name


@pytest.mark.parametrize("bounds,good,bad", [
    ("[0, 1)", [0, 0.5], [-0.1, 1]),
    ("(0, inf)", [1e-9, 1e9], [0, -1]),
    ("0 or (1, inf)", [0, 1.5], [0.5, 1, -1]),
    ("-1 or [1, inf)", [-1, 1, 7], [0, -2]),
])
def test_bounds_by_hand(bounds, good, bad):
    parse_bounds(bounds)
    for value in good:
        check_number("x", value, bounds)
    for value in bad:
        with pytest.raises(ValueError, match="--x must be"):
            check_number("x", value, bounds)
