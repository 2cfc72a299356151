"""Implicit-prompt extraction and repeated-prompt stripping (align/data/prompts.py), alone and
through validation."""

from __future__ import annotations

import pytest

from align.data import load
from align.data.prompts import PromptError, shared_messages, split_text_pair, \
    strip_repeated_prompt
from tests.conftest import write_jsonl

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731
S = lambda text: {"role": "system", "content": text}  # noqa: E731


# ---- strings ------------------------------------------------------------------------------

def test_hh_transcripts_split_after_the_last_shared_assistant_marker():
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: It is 4."
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: It is 5."
    prompt, c, r = split_text_pair(chosen, rejected)
    # the answers share "It is " but that is inside the answer, not a turn boundary
    assert prompt == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant:"
    assert (c, r) == (" It is 4.", " It is 5.")
    assert prompt + c == chosen and prompt + r == rejected


def test_hh_pair_that_differs_in_an_earlier_turn_keeps_the_earlier_prompt():
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: bye\n\nAssistant: Bye."
    rejected = "\n\nHuman: Hi\n\nAssistant: Go away.\n\nHuman: bye\n\nAssistant: Bye."
    prompt, c, _ = split_text_pair(chosen, rejected)
    assert prompt == "\n\nHuman: Hi\n\nAssistant:" and c.startswith(" Hello!")


def test_text_without_markers_splits_at_the_word_where_answers_differ():
    # TRL's own example of the standard implicit-prompt type; the space goes to the answers
    assert split_text_pair("The sky is blue.", "The sky is green.") == \
        ("The sky is", " blue.", " green.")
    # "bl" is shared, but a prompt never ends inside a word
    assert split_text_pair("The sky is blue.", "The sky is black.")[0] == "The sky is"


@pytest.mark.parametrize("marker", ["<|im_start|>assistant\n", "[/INST]",
                                    "<|start_header_id|>assistant<|end_header_id|>\n\n"])
def test_rendered_chat_markers_are_turn_boundaries(marker):
    head = f"<s>[INST] q {marker}" if marker == "[/INST]" else f"user: q\n{marker}"
    prompt, c, r = split_text_pair(head + "Sure, yes", head + "Sure, no")
    assert prompt == head and (c, r) == ("Sure, yes", "Sure, no")


@pytest.mark.parametrize("chosen,rejected,field", [
    ("Paris.", "London.", "prompt"),  # no shared part at all
    ("2+2=4", "2+2=5", "prompt"),  # shared, but not at a word or turn boundary
    ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant:", "rejected"),  # no answer
])
def test_pairs_without_a_usable_shared_prompt_are_refused(chosen, rejected, field):
    with pytest.raises(PromptError) as e:
        split_text_pair(chosen, rejected)
    assert e.value.field == field


# ---- message lists ------------------------------------------------------------------------

def test_multi_turn_conversations_share_everything_up_to_the_last_user_turn():
    history = [S("be brief"), U("q1"), A("a1"), U("q2")]
    assert shared_messages(history + [A("good")], history + [A("bad")]) == 4


def test_shared_assistant_turns_after_the_last_user_turn_go_back_to_the_answers():
    chosen = [U("q"), A("Sure."), A("good")]
    rejected = [U("q"), A("Sure."), A("bad")]
    assert shared_messages(chosen, rejected) == 1


def test_a_tool_result_can_end_the_prompt():
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    history = [U("weather?"), call, {"role": "tool", "content": "sunny"}]
    assert shared_messages(history + [A("Sunny.")], history + [A("Rain.")]) == 3


def test_conversations_without_a_shared_user_turn_are_refused():
    with pytest.raises(PromptError, match="share no leading user message"):
        shared_messages([U("q1"), A("a")], [U("q2"), A("b")])


def test_system_messages_that_differ_are_named():
    with pytest.raises(PromptError) as e:
        shared_messages([S("be brief"), U("q"), A("a")], [S("be long"), U("q"), A("b")])
    assert str(e.value).startswith("the system messages of chosen and rejected differ")
    assert e.value.field == "rejected[0]"
    with pytest.raises(PromptError, match="system messages of chosen and rejected differ"):
        shared_messages([S("be brief"), U("q"), A("a")], [U("q"), A("b")])


def test_only_a_shared_system_message_means_different_prompts():
    with pytest.raises(PromptError, match="share only their system message"):
        shared_messages([S("s"), U("q1"), A("a")], [S("s"), U("q2"), A("b")])


# ---- explicit prompts repeated in the answers (HuggingFaceH4/ultrafeedback_binarized) -----

def test_repeated_string_prompt_is_checked_and_stripped():
    prompt, c, r = strip_repeated_prompt(" What is 2+2?\n", [U("What is 2+2?"), A("4")],
                                         [U("What is 2+2?"), A("5")])
    assert (prompt, c, r) == ([U("What is 2+2?")], [A("4")], [A("5")])


def test_repeated_message_prompt_must_equal_the_prompt():
    assert strip_repeated_prompt([S("s"), U("q")], [S("s"), U("q"), A("a")],
                                 [S("s"), U("q"), A("b")])[0] == [S("s"), U("q")]
    with pytest.raises(PromptError, match="not the 'prompt' field"):
        strip_repeated_prompt([U("other")], [U("q"), A("a")], [U("q"), A("b")])


def test_repeated_prompt_that_differs_from_the_prompt_column_is_an_error(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "What is 2+2?",
                                            "chosen": [U("What is 3+3?"), A("6")],
                                            "rejected": [U("What is 3+3?"), A("7")]}])
    r = load(p, "pairwise")
    assert r.errors[0].field == "chosen" and "not the 'prompt' field" in r.errors[0].message


def test_validation_names_the_record_whose_system_messages_differ(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"chosen": [S("s"), U("q"), A("a")], "rejected": [S("s"), U("q"), A("b")]},
        {"chosen": [S("s1"), U("q"), A("a")], "rejected": [S("s2"), U("q"), A("b")]}])
    r = load(p, "pairwise")
    assert len(r.rows) == 1 and r.errors[0].position == "line 2"
    assert "system messages of chosen and rejected differ" in r.errors[0].message


def test_implicit_string_prompts_through_validation(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"},
        {"chosen": "Paris.", "rejected": "London."}])
    r = load(p, "pairwise")
    assert r.rows[0] == {"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": " yes",
                         "rejected": " no"}
    assert r.implicit_prompt and r.layout() == "standard, implicit prompt"
    assert r.errors[0].position == "line 2" and "add a 'prompt' field" in r.errors[0].message
