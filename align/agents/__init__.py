"""Agents: tools and environments in TRL's shapes, and the multi-turn rollout loop.

- ``args.py``: the flags (``AgentArgs``: --tools, --environment, --max-tool-calls,
  --tool-timeout), torch-free;
- ``tools.py``: importing and checking the user's tools and environments (``load_toolset``);
- ``parsing.py``: tool calls out of generated text, per chat template (Hermes ``<tool_call>``);
- ``execute.py``: running a batch's calls in parallel under the timeout; errors become text;
- ``loop.py``: the multi-turn rollout over a sampler, with the mask of sampled tokens.
"""
