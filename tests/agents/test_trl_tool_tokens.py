"""TRL 1.16's tool loop trains on the token ids SFT taught, for the quickstart agent stage's
tokenizer (merges across words, ``align.tiny.build_tokenizer(..., span_words=True)``) and
the chatml-tools template.

GRPO with the tool did not raise the stage's accuracy, and the suspect was the multi-turn
bookkeeping: if TRL re-tokenized the conversation after a tool call, or rendered the prompt or
the tool turn differently from SFT, it would train on other ids than the ones sampled, or mask
the wrong ones. It does not: TRL concatenates ids (prompt + sampled call + the tool turn's ids
from ``_get_tool_suffix_ids`` + the sampled answer) and masks exactly the tool turn. This test
pins that for this tokenizer: TRL's pieces, joined, are the ids of the whole rendered
transcript, and the masked piece is the tool turn and the next assistant header. (The cause
was elsewhere: docs/quickstart.md, "The agent stage".) It calls two private helpers of TRL's
GRPOTrainer on purpose: a TRL that changes them should fail here, where it is explained.
"""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="module")
def stage_trainer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from align.agents.args import AgentArgs
    from align.agents.tools import load_toolset
    from align.algos.online import hermes_parser
    from align.algos.tools import trl_tools
    from align.quickstart import agent

    tmp = tmp_path_factory.mktemp("agent-tokens")
    model_dir = agent.build_model(tmp / "base", 0, agent.split(0)["sft"])
    tools_file = tmp / "agent_tools.py"
    tools_file.write_text(agent.TOOLS_FILE, encoding="utf-8")
    scope: dict[str, Any] = {}
    exec(compile(agent.TOOLS_FILE, "agent_tools.py", "exec"), scope)  # noqa: S102 - our text
    # the tools and the parser as align hands them to TRL (align/algos/online.py, tools.py)
    tools = trl_tools(load_toolset(AgentArgs(tools=f"{tools_file}:multiply")))["tools"]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    hermes_parser(tokenizer, str(model_dir))
    args = GRPOConfig(output_dir=str(tmp / "grpo"), per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=64, report_to="none",
                      use_cpu=True)
    rows = Dataset.from_list([{"prompt": agent.prompt(37, 52), "answer": 1924}] * 2)
    return GRPOTrainer(model=str(model_dir), reward_funcs=scope["exact_answer"], args=args,
                       train_dataset=rows, tools=tools, processing_class=tokenizer)


def test_trl_tool_loop_ids_are_the_transcript_sft_trains_on(stage_trainer):
    from align.quickstart import agent

    tok = stage_trainer.processing_class
    full = agent.transcript(37, 52)  # user, assistant call, tool result, assistant answer
    # what SFT trains on: the whole transcript rendered with the tool schema, tokenized at once
    text = tok.apply_chat_template(full, tools=[agent.schema()], tokenize=False)
    whole = tok(text, add_special_tokens=False)["input_ids"]
    # what TRL's loop trains on, piece by piece
    prompt_ids = stage_trainer._tokenize_prompts([full[:1]])[0][0]
    call_text = text[len(tok.decode(prompt_ids)):].split("<|im_end|>")[0] + "<|im_end|>"
    call = tok(call_text, add_special_tokens=False)["input_ids"]  # as SFT taught it to sample
    suffix = stage_trainer._get_tool_suffix_ids([full[2]])
    answer = tok("The answer is 1924.<|im_end|>", add_special_tokens=False)["input_ids"]
    joined = prompt_ids + call + suffix + answer
    # the prompt (with the schema TRL renders from the function) is SFT's, the pieces join
    # into the same ids, and the decoded ids encode back to themselves (no merge across a seam)
    assert joined == whole[:len(joined)] and tok.decode(whole[len(joined):]) == "\n"
    assert tok(tok.decode(joined), add_special_tokens=False)["input_ids"] == joined
    # TRL's tool mask is 0 on ``suffix`` only: the tool turn and the next assistant header
    assert tok.decode(suffix) == ("\n<|im_start|>user\n<tool_response>\n1924\n</tool_response>"
                                  "<|im_end|>\n<|im_start|>assistant\n")
    assert json.loads(tok.decode(call).split("<tool_call>\n")[1].split("\n</tool_call>")[0]) \
        == {"name": "multiply", "arguments": {"a": 37, "b": 52}}
