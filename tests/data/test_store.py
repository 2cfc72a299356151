"""Validated rows in Arrow (align/data/store.py): the schema widens as later batches bring new
columns or types; rows read back as written; selections do not copy."""

from __future__ import annotations

import pytest

import align.data.store as store


@pytest.fixture
def tiny_batches(monkeypatch):
    monkeypatch.setattr(store, "BATCH_ROWS", 2)


def _rows(items):
    w = store.RowWriter()
    for item in items:
        w.add(item)
    return w.close()


def test_rows_come_back_as_written(tiny_batches):
    msgs = [{"role": "user", "content": "q"}]
    call = [{"role": "assistant", "content": None,
             "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]
    rows = _rows([{"m": msgs, "n": 1}, {"m": call, "n": 2}, {"m": msgs, "n": 3}])
    # messages keep exactly their own keys: no null tool_calls added to the others
    assert list(rows) == [{"m": msgs, "n": 1}, {"m": call, "n": 2}, {"m": msgs, "n": 3}]
    assert rows[1:] == [{"m": call, "n": 2}, {"m": msgs, "n": 3}] and rows[-1]["n"] == 3


def test_a_later_batch_widens_the_schema(tiny_batches):
    rows = _rows([{"a": 1, "b": None}, {"a": 2, "b": None}, {"a": 2.5, "b": "x", "c": [1]},
                  {"a": 3, "b": "y"}, {"solution": "2", "a": 1}, {"solution": 4, "a": 1}])
    assert [r["a"] for r in rows] == [1.0, 2.0, 2.5, 3.0, 1.0, 1.0]
    assert [r["b"] for r in rows] == [None, None, "x", "y", None, None]
    assert rows[2]["c"] == [1] and rows[0]["c"] is None
    assert [r["solution"] for r in rows][-2:] == ["2", "4"]  # numbers mixed with text: text


def test_select_keeps_order_and_changes_the_digest(tiny_batches):
    rows = _rows([{"i": i} for i in range(5)])
    picked = store.select(rows, [3, 0])
    assert list(picked) == [{"i": 3}, {"i": 0}] and picked.digest != rows.digest
    assert store.select([{"i": 1}, {"i": 2}], [1]) == [{"i": 2}]


def test_same_content_same_digest():
    assert _rows([{"a": "x"}]).digest == _rows([{"a": "x"}]).digest != _rows([{"a": "y"}]).digest


def test_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path))
    monkeypatch.setattr(store, "_WORK_DIR", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    root = tmp_path / "tmp"
    left = root / f"rows-{store._host()}-{dead}-abc"
    other_host = root / f"rows-otherhost-{dead}-abc"
    for folder in (left, other_host):
        folder.mkdir(parents=True)
    mine = store.work_dir()
    assert mine.is_dir() and not left.exists() and other_host.exists()
