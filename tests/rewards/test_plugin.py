"""--reward-fn plugins: every failure is one clear error naming the file and the function."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.errors import AlignError
from align.rewards.plugin import check_rewards, load_reward_fn, parse_spec

GOOD = '''
def score(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]

def with_column(prompts, completions, solution, trainer_state=None):
    return [1.0 if c == s else 0.0 for c, s in zip(completions, solution)]
'''
BAD = '''
import math

def boom(prompts, completions, **kwargs):
    return [1.0 / 0 for c in completions]

def too_few(prompts, completions, **kwargs):
    return [1.0]

def not_numbers(prompts, completions, **kwargs):
    return ["high" for c in completions]

def not_a_list(prompts, completions, **kwargs):
    return 1.0

def nan(prompts, completions, **kwargs):
    return [math.nan for c in completions]

def no_completions(prompts):
    return [1.0]

def needs_column(prompts, completions, difficulty):
    return [1.0 for c in completions]

async def later(prompts, completions, **kwargs):
    return [1.0 for c in completions]

NOT_CALLABLE = 3
'''


@pytest.fixture
def plugins(tmp_path):
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(GOOD)
    bad.write_text(BAD)
    return good, bad


def test_good_plugin_is_wrapped_with_its_name(plugins):
    good, _ = plugins
    fn = load_reward_fn(f"{good}:score")
    assert fn.__name__ == "score"  # TRL logs rewards/score/mean
    assert fn(prompts=["p", "p"], completions=["ab", "abc"], trainer_state=None) == [2.0, 3.0]


def test_plugin_gets_only_the_arguments_it_declares(plugins):
    good, _ = plugins
    fn = load_reward_fn(f"{good}:with_column", columns=["solution"])
    out = fn(prompts=["p"] * 2, completions=["4", "5"], solution=["4", "4"],
             completion_ids=[[1], [2]], log_metric=print, trainer_state=None)
    assert out == [1.0, 0.0]


@pytest.mark.parametrize("spec, message", [
    ("missing.py:score", "no such file"),
    ("{good}:nope", "has no function 'nope' (it defines: score, with_column)"),
    ("{bad}:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
    ("{bad}:no_completions", "cannot take prompts and completions"),
    ("{bad}:needs_column", "requires difficulty, which is not a dataset column"),
    ("{bad}:later", "async reward functions are not supported"),
])
def test_load_errors_name_file_and_function(plugins, tmp_path, monkeypatch, spec, message):
    good, bad = plugins
    monkeypatch.chdir(tmp_path)
    spec = spec.format(good=good, bad=bad)
    with pytest.raises(AlignError) as err:
        load_reward_fn(spec, columns=["solution"])
    assert message in str(err.value)
    assert spec in str(err.value)


def test_import_error_names_file_and_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(AlignError, match=r"broken.py:f: importing .* failed \(broken.py line 2\): "
                                         r"RuntimeError: no GPU here"):
        load_reward_fn(f"{broken}:f")


@pytest.mark.parametrize("name, message", [
    ("boom", "raised ZeroDivisionError: float division by zero (bad.py line 5)"),
    ("too_few", "returned 1 rewards for 2 completions"),
    ("not_numbers", "returned 'high' (a str) for completion 0"),
    ("not_a_list", "returned float; it must return a list"),
    ("nan", "returned nan (a float) for completion 0; rewards must be finite"),
])
def test_call_errors_name_file_and_function(plugins, name, message):
    _, bad = plugins
    fn = load_reward_fn(f"{bad}:{name}")
    with pytest.raises(AlignError) as err:
        fn(prompts=["p", "p"], completions=["a", "b"])
    assert message in str(err.value) and f"{bad}:{name}" in str(err.value)


def test_spec_shape_and_results_checked():
    assert parse_spec("dir/f.py:fn") == ("dir/f.py", "fn")
    for wrong in ("f.py", "f.txt:fn", "f.py:", "f.py:1fn"):
        with pytest.raises(ValueError, match="path/to/file.py:function_name"):
            parse_spec(wrong)
    assert check_rewards([1, None, 0.5], 3, "f.py:fn") == [1.0, None, 0.5]
    import numpy as np

    assert check_rewards(np.array([1.0, 2.0]), 2, "f.py:fn") == [1.0, 2.0]


def test_documented_example_plugin_loads_and_scores():
    example = Path(__file__).resolve().parents[2] / "recipes/reward_fns/example_reward.py"
    fn = load_reward_fn(f"{example}:correct_and_concise", columns=["solution"])
    logged = {}
    out = fn(prompts=["q"] * 3, completions=["Answer: 42", [{"role": "assistant",
                                                              "content": "Answer: 41"}], "x"],
             solution=["42", "42", None], completion_ids=[[1] * 100, [1] * 10, [1]],
             log_metric=logged.__setitem__)
    assert out == [pytest.approx(0.9), pytest.approx(-0.01), None]
    assert logged == {"example/answered_frac": pytest.approx(2 / 3)}
