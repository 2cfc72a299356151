import dataclasses

import pytest

from align.errors import AlignError
from align.options import field_types
from align.registry import ALGOS, AlgoSpec, get_algo, register

EXPECTED = {"ppo", "dpo", "kto", "cpo", "orpo", "simpo", "grpo", "rloo", "rm", "sft"}


def test_registry_lists_every_algorithm_and_no_other():
    assert set(ALGOS) == EXPECTED


def test_unknown_algo_lists_names_and_suggests_closest():
    with pytest.raises(AlignError) as e:
        get_algo("dop")
    assert "Did you mean 'dpo'" in str(e.value)
    for name in EXPECTED:
        assert name in str(e.value)


def test_duplicate_registration_raises():
    spec = ALGOS["dpo"]
    with pytest.raises(ValueError, match="already registered"):
        register(AlgoSpec("dpo", "pairwise", spec.config_cls, spec.run, needs_ref=True,
                          reward_model="no", summary="", paper=""))


def test_formats_are_known():
    from align.data import FORMATS

    for spec in ALGOS.values():
        assert spec.data_format in FORMATS


def test_no_field_is_declared_twice_for_one_algorithm_and_types_agree():
    seen: dict[str, type] = {}
    for spec in ALGOS.values():
        names: list[str] = []
        for cls in spec.groups().values():
            for name, tp in field_types(cls).items():
                names.append(name)
                assert seen.setdefault(name, tp) is tp, f"{name} has two types"
        dupes = {n for n in names if names.count(n) > 1}
        assert not dupes, f"{spec.name}: {dupes} declared in two groups"


def test_every_field_has_help():
    from align.config import SHARED_GROUPS

    classes = list(SHARED_GROUPS.values()) + [s.config_cls for s in ALGOS.values()]
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
