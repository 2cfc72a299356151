"""Built-in rewards on hand-made completions, standard and conversational."""

from __future__ import annotations

import pytest

from align.rewards.builtin import (FormatReward, LengthReward, accuracy, answers_match,
                                   completion_text, extract_answer, make_builtin, parse_number)


def chat(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("text, number", [
    ("42", 42.0), ("1,000", 1000.0), ("-3.5", -3.5), (".5", 0.5), ("0.50", 0.5),
    ("1/2", 0.5), ("\\frac{3}{4}", 0.75), ("-\\dfrac{1}{4}", -0.25), ("1e-3", 0.001),
    ("$12$", 12.0), ("50%", 50.0), ("7.", 7.0), (3, 3.0),
    ("12,34", None), ("1/0", None), ("Paris", None), ("", None), ("4 apples", None),
])
def test_parse_number_by_hand(text, number):
    assert parse_number(text) == (pytest.approx(number) if number is not None else None)


@pytest.mark.parametrize("text, answer", [
    ("so it is \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
    ("<think>2+2</think><answer> 4 </answer>", "4"),
    ("Natalia sold 48 clips.\n#### 72", "72"),
    ("Work...\nAnswer: 41\nWait, Answer: 42", "42"),
    ("The final answer is 9", "9"),
    ("no marker here 17", None),
])
def test_extract_answer_markers(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize("completion, solution, match", [
    ("Answer: 1000", "1,000", True),
    ("Answer: 1,000.", 1000, True),
    ("Answer: .5", "1/2", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("Answer: 0.3334", "1/3", False),         # 1e-6 tolerance: rounding is wrong
    ("Answer: 0.3333333333", "1/3", True),
    ("I think it's 3, no, 7", "7", True),       # no marker: the last number
    ("I think it's 7, no, 3", "7", False),
    ("Answer: 42 apples", "#### 42", True),     # GSM8K-style solution
    ("Answer: 41", "42", False),
    ("<answer>Paris</answer>", "paris", True),  # text: normalised compare
    ("Answer: \\text{Paris}.", "Paris", True),
    ("Answer: Lyon", "Paris", False),
    ("", "3", False),
])
def test_answers_match_by_hand(completion, solution, match):
    assert answers_match(completion, solution) is match


def test_accuracy_standard_conversational_and_missing_solution():
    completions = ["Answer: 4", "Answer: 5", "Answer: 6"]
    assert accuracy(["p"] * 3, completions, solution=["4", "4", None]) == [1.0, 0.0, None]
    assert accuracy(["p"] * 2, [chat("\\boxed{4}"), chat("5")], solution=[4, 4]) == [1.0, 0.0]
    assert accuracy(["p"], ["Answer: 4"]) == [None]  # no solution column at all


def test_completion_text_reads_every_form():
    assert completion_text("hi") == "hi"
    assert completion_text(chat("hi")) == "hi"
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "ab"
    assert completion_text([{"role": "tool", "content": "x"}, {"role": "assistant",
                                                               "content": "y"}]) == "y"


def test_format_reward_full_match_with_default_pattern():
    reward = FormatReward()
    good = "<think>2 and 2</think>\n<answer>4</answer>"
    assert reward(["p"] * 4, [good, "  " + good + "\n", "<answer>4</answer>",
                              good + " trailing"]) == [1.0, 1.0, 0.0, 0.0]
    assert reward(["p"], [chat(good)]) == [1.0]
    assert FormatReward(r".*\d.*")(["p"] * 2, ["a 1 b", "none"]) == [1.0, 0.0]
    assert reward.__name__ == "format"


def test_length_reward_peaks_at_target():
    reward = LengthReward(4)
    ids = [[1] * n for n in (0, 2, 4, 6, 8, 12)]
    assert reward(["p"] * 6, ["x"] * 6, completion_ids=ids) == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="completion_ids"):
        reward(["p"], ["x"])


def test_make_builtin_names_and_errors():
    assert make_builtin("accuracy") is accuracy
    assert make_builtin("length", length_target=3).target == 3
    with pytest.raises(ValueError, match="--length-target"):
        make_builtin("length")
    with pytest.raises(ValueError, match="choose from"):
        make_builtin("bleu")
