import dataclasses

import pytest

from align.errors import AlignError
from align.options import field_types
from align.registry import ALGOS, AlgoSpec, get_algo, register

EXPECTED = {"ppo", "dpo", "kto", "cpo", "orpo", "simpo", "grpo", "rm", "sft"}


def test_registry_lists_every_algorithm():
    assert EXPECTED <= set(ALGOS)


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


def test_algo_fields_do_not_shadow_shared_fields_and_agree_on_type():
    from align.config import SHARED_GROUPS

    shared = {f.name for cls in SHARED_GROUPS.values() for f in dataclasses.fields(cls)}
    seen: dict[str, type] = {}
    for spec in ALGOS.values():
        types = field_types(spec.config_cls)
        for name, tp in types.items():
            assert name not in shared, f"{spec.name}.{name} shadows a shared flag"
            assert seen.setdefault(name, tp) is tp, f"{name} has two types"


def test_every_field_has_help():
    from align.config import SHARED_GROUPS

    classes = list(SHARED_GROUPS.values()) + [s.config_cls for s in ALGOS.values()]
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
