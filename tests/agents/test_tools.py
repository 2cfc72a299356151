"""Loading --tools and --environment: a TRL file works unchanged; every mistake is an AlignError
naming the flag, the file and the function or class, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.agents.args import AgentArgs, parse_environment_spec, parse_tools_spec
from align.agents.tools import check_files, load_toolset
from align.errors import AlignError

TOOLS = Path(__file__).with_name("trl_style_tools.py")


def test_trl_tool_file_and_environment_load_unchanged():
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply,async_add",
                                environment=f"{TOOLS}:WordleLikeEnv"))
    assert [t.name for t in ts.tools_for()] == ["multiply", "async_add", "guess"]
    assert ts.tools[1].is_async and ts.environments[None].has_reward
    schema = ts.schemas()[0]["function"]
    assert schema["name"] == "multiply" and schema["parameters"]["required"] == ["a", "b"]
    assert schema["parameters"]["properties"]["a"] == {"type": "integer",
                                                       "description": "The first integer."}


def test_the_same_schemas_as_trl_renders():
    """TRL renders tools with transformers' get_json_schema; align's schemas are the same."""
    from transformers.utils import get_json_schema

    import importlib.util
    spec = importlib.util.spec_from_file_location("trl_style_tools", TOOLS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply", environment=f"{TOOLS}:WordleLikeEnv"))
    assert ts.schemas() == [get_json_schema(mod.multiply), get_json_schema(mod.WordleLikeEnv().guess)]


def test_spec_shapes():
    assert parse_tools_spec("a.py:f,g,b.py:h") == [("a.py", "f"), ("a.py", "g"), ("b.py", "h")]
    assert parse_environment_spec("x.py:E") == {None: ("x.py", "E")}
    assert parse_environment_spec("m=a.py:A, g=b.py:B") == {"m": ("a.py", "A"), "g": ("b.py", "B")}


@pytest.mark.parametrize("field, value, words", [
    ("tools", "tools.py", "should look like path/to/file.py:function"),
    ("tools", "f,a.py:g", "should look like path/to/file.py:function"),
    ("tools", "a.py:f,f", "names f twice"),
    ("environment", "env.py", "should look like path/to/file.py:Class"),
    ("environment", "a=x.py:A,x.py:B", "not both"),
    ("environment", "a=x.py:A,a=y.py:B", "names a twice"),
    ("max_tool_calls", 0, "--max-tool-calls must be in [1, inf)"),
    ("tool_timeout", 0, "--tool-timeout must be in (0, inf)"),
])
def test_bad_flag_values_are_refused(field, value, words):
    with pytest.raises(ValueError, match=None) as e:
        AgentArgs(**{field: value})
    assert words in str(e.value)


def write(tmp_path, text):
    f = tmp_path / "user.py"
    f.write_text(text)
    return f


@pytest.mark.parametrize("text, spec, words", [
    ("def f(a: int):\n    return a\n", "tools:f", "f: Cannot generate JSON schema for f because it "
     "has no docstring!; write a Google-style docstring"),
    ('def f(a):\n    """Do.\n\n    Args:\n        a: x\n    """\n', "tools:f",
     "Argument a is missing a type hint in function f; every argument needs a type hint"),
    ('def f(a: int):\n    """Do."""\n', "tools:f", "no description for the argument 'a'"),
    ("def g(): pass\n", "tools:f", r"has no function 'f' \(it defines: g\)"),
    ("class E:\n    def reset(self): pass\n", "tools:E",
     "E is a class; an environment class goes to --environment"),
    ("x = 1\n", "tools:x", "x is a int, not a function"),
    ("import nonexistent_module_xyz\n", "tools:f",
     "importing .*user.py failed \\(user.py line 1\\): ModuleNotFoundError"),
    ("class E:\n    pass\n", "environment:E", "E has no reset method"),
    ("def E(): pass\n", "environment:E", "E is a function, not a class"),
    ("class E:\n    def __init__(self):\n        raise OSError('no db')\n    def reset(self): pass\n",
     "environment:E", r"E\(\) raised OSError: no db \(user.py line 3\)"),
    ("class E:\n    def reset(self, **kw): pass\n    def get_reward(self, x): return 1\n",
     "environment:E", "get_reward takes x; it is called with no arguments"),
    ("class E:\n    def reset(self, **kw): pass\n    def move(self, d):\n        return d\n",
     "environment:E", "move: Cannot generate JSON schema for move because it has no docstring"),
])
def test_user_file_mistakes_name_flag_file_and_function(tmp_path, text, spec, words):
    f = write(tmp_path, text)
    flag, name = spec.split(":")
    with pytest.raises(AlignError) as e:
        load_toolset(AgentArgs(**{flag: f"{f}:{name}"}))
    message = str(e.value)
    assert message.startswith(f"--{flag} {f}:{name}: "), message
    import re
    assert re.search(words, message), message


def test_environment_method_with_a_tools_name_is_refused(tmp_path):
    f = write(tmp_path, '''
def move(d: str) -> str:
    """Move.

    Args:
        d: where
    """
    return d

class E:
    def reset(self, **kw): pass
    def move(self, d: str) -> str:
        """Move.

        Args:
            d: where
        """
        return d
''')
    with pytest.raises(AlignError, match="its method move has the name of the tool"):
        load_toolset(AgentArgs(tools=f"{f}:move", environment=f"{f}:E"))


def test_check_files_imports_nothing(tmp_path):
    f = write(tmp_path, "raise SystemExit('must not run')\n")
    check_files(AgentArgs(tools=f"{f}:f", environment=f"{f}:E"))  # exists: fine, not imported
    with pytest.raises(AlignError, match="--tools nope.py:f: no such file nope.py"):
        check_files(AgentArgs(tools="nope.py:f"))
