"""What the board reads from run directories (no browser): incremental metrics, downsampling,
states (killed, stopped by SIGTERM), the launch command, the guard, and the speed on 200 runs
and on a run with 100k metric rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from align.board import launch  # noqa: E402
from align.board.runs import (MetricsTail, PathRefused, Runs, downsample,  # noqa: E402
                              state_of)
from align.errors import AlignError  # noqa: E402
from align.run_status import end_state, write_status  # noqa: E402
from tests.board.conftest import json_read_cpu, many_runs  # noqa: E402


def _write_rows(path: Path, rows: list[dict], mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))


def test_metrics_tail_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write_rows(path, [{"step": i, "loss": 1.0 / i} for i in range(1, 101)], "w")
    tail = MetricsTail(path)
    assert tail.update() == 100 and tail.bytes_read == path.stat().st_size
    size = path.stat().st_size
    _write_rows(path, [{"step": 101, "loss": 0.5}])
    with path.open("a") as fh:
        fh.write('{"step": 102, "lo')  # a line still being written
    assert tail.update() == 1
    assert tail.bytes_read == len(json.dumps({"step": 101, "loss": 0.5})) + 1
    assert tail.offset == size + tail.bytes_read  # the half line waits
    with path.open("a") as fh:
        fh.write('ss": 0.25}\n')
    assert tail.update() == 1 and tail.rows[-1] == {"step": 102, "loss": 0.25}
    assert tail.update() == 0 and tail.bytes_read == 0
    # --resume rewrites the file (a new inode, cut back): read again from the start
    tmp = tmp_path / "metrics.jsonl.tmp"
    _write_rows(tmp, [{"step": i, "loss": 2.0} for i in range(1, 11)], "w")
    os.replace(tmp, path)
    generation = tail.generation
    assert tail.update() == 10 and len(tail.rows) == 10 and tail.generation == generation + 1


def test_downsample_keeps_spikes_and_the_limit():
    steps = [float(i) for i in range(100_000)]
    values = [0.0] * 100_000
    values[31_337] = 50.0  # a spike an alarm would point at
    values[77_000] = -9.0
    s, v = downsample(steps, values, limit=1000)
    assert len(s) <= 1000 and s == sorted(s)
    assert (31_337.0, 50.0) in zip(s, v) and (77_000.0, -9.0) in zip(s, v)
    assert downsample([1.0, 2.0], [3.0, 4.0]) == ([1.0, 2.0], [3.0, 4.0])


def _run_dir(root: Path, name: str, rows: int = 20, status: dict | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "align_config.yaml").write_text(f"algo: dpo\nmodel: m\nlearning_rate: 0.001\n"
                                           f"beta: 0.1\nseed: {len(name)}\n")
    _write_rows(run / "metrics.jsonl", [{"step": i, "loss": 1 / i, "rewards/margins": i * 0.1}
                                        for i in range(1, rows + 1)], "w")
    if status is not None:
        write_status(run, status)
    return run


def test_a_running_status_whose_process_is_gone_reads_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = os.uname().nodename
    run = _run_dir(tmp_path, "gone", status={"state": "running", "pid": proc.pid, "host": host,
                                             "started": time.time() - 5})
    assert state_of(run, json.loads((run / "align_status.json").read_text())) == "killed"
    alive = {"state": "running", "pid": os.getpid(), "host": host, "started": time.time()}
    assert state_of(run, alive) == "running"
    # a status written after its process started is that process's; a process started long
    # after the status (a dead run's id taken by a newer process) is not the run
    assert state_of(run, {**alive, "started": time.time() + 100}) == "running"
    assert state_of(run, {**alive, "started": time.time() - 10_000_000}) == "killed"
    assert state_of(run, {"state": "collapsed"}) == "collapsed"


def test_end_states_follow_the_exit_codes():
    from align.health.monitor import CollapseStop

    assert end_state(None) == ("finished", "", 0)
    assert end_state(KeyboardInterrupt()) == ("stopped", "stopped by Ctrl-C or SIGTERM", 130)
    assert end_state(CollapseStop("training stopped by x\nmore")) == \
        ("collapsed", "training stopped by x", 3)
    assert end_state(AlignError("bad --beta"))[0::2] == ("failed", 2)
    assert end_state(RuntimeError("boom")) == ("failed", "boom", 1)


def test_sigterm_ends_a_run_as_ctrl_c_and_its_status_says_stopped(tmp_path, tiny_lm,
                                                                  pairs_file):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "align", "rlhf", "--algo", "dpo", "--model",
                             str(tiny_lm), "--dataset", str(pairs_file), "--output-dir", str(out),
                             "--max-steps", "100000", "--per-device-train-batch-size", "4",
                             "--save-steps", "2", "--report-to", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("checkpoint-*/align_checkpoint.json")):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    status = json.loads((out / "align_status.json").read_text())
    assert status["state"] == "stopped" and status["exit_code"] == 130
    assert 0 < status["step"] < 100000 and status["total"] == 100000
    assert "stopped by Ctrl-C or SIGTERM" in (out / "console.log").read_text()
    assert list(out.glob("checkpoint-*/align_checkpoint.json"))  # what was saved stays


def test_run_ids_never_leave_their_root(tmp_path):
    _run_dir(tmp_path / "root", "a")
    runs = Runs([tmp_path / "root"])
    assert runs.get("0:a").path == (tmp_path / "root" / "a").resolve()
    for bad in ("0:../root2", "0:a/../../x", "1:a", "x:a", "0:/etc"):
        with pytest.raises(PathRefused):
            runs.get(bad)


def test_launch_command_is_an_argument_list_of_known_flags(tmp_path):
    root = tmp_path.resolve()
    argv = launch.command("dpo", {"model": "m; rm -rf /", "dataset": "d.jsonl",
                                  "output_dir": "new", "beta": "0.2", "lora": True,
                                  "bf16": False}, [root])
    assert argv[:6] == [sys.executable, "-m", "align", "rlhf", "--algo", "dpo"]
    assert argv[argv.index("--model") + 1] == "m; rm -rf /"  # one argument, never a shell
    assert argv[argv.index("--output-dir") + 1] == str(root / "new")
    assert "--lora" in argv and "--no-bf16" in argv and argv[argv.index("--beta") + 1] == "0.2"
    assert launch.shown(argv).startswith("align rlhf --algo dpo --model 'm; rm -rf /'")
    with pytest.raises(AlignError, match="has no flag --kl-coef"):
        launch.command("dpo", {"output_dir": "x", "kl_coef": "0.1"}, [root])
    with pytest.raises(AlignError, match="not a number"):
        launch.command("dpo", {"output_dir": "x", "beta": "high"}, [root])
    with pytest.raises(PathRefused, match="outside the served directories"):
        launch.command("dpo", {"output_dir": "/elsewhere"}, [root])


def test_the_form_carries_the_flags_defaults_bounds_and_sources():
    form = launch.form("ppo")
    by_name = {f["name"]: f for fields in form["groups"].values() for f in fields}
    kl = by_name["kl_coef"]
    assert kl["flag"] == "--kl-coef" and kl["bounds"] and kl["source"] and kl["help"]
    assert by_name["lora"]["type"] == "bool" and by_name["max_steps"]["type"] == "int"
    assert "health" in form["groups"] and "resume_from" not in by_name


def test_guard_needs_the_token_the_host_and_the_header(tmp_path):
    from starlette.testclient import TestClient

    from align.board.server import create_app

    _run_dir(tmp_path, "a")
    app = create_app([tmp_path], token=None, hosts={"127.0.0.1:9"})
    local = TestClient(app, base_url="http://127.0.0.1:9")
    assert local.get("/api/runs").status_code == 200
    assert TestClient(app, base_url="http://evil.example:9").get("/api/runs").status_code == 403
    assert local.post("/api/command", json={}).status_code == 403  # no X-Align-Board
    locked = TestClient(create_app([tmp_path], token="s3cret"), base_url="http://10.0.0.2:9")
    assert locked.get("/api/runs").status_code == 401
    first = locked.get("/?token=s3cret")
    assert first.status_code == 200 and "align_board_token" in first.headers["set-cookie"]
    assert locked.get("/api/runs").status_code == 200  # the cookie from then on
    ro = TestClient(create_app([tmp_path], read_only=True), base_url="http://127.0.0.1")
    refused = ro.post("/api/launch", json={"algo": "dpo", "values": {"output_dir": "x"}},
                      headers={"X-Align-Board": "1"})
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]


def test_board_refuses_another_host_without_a_token(capsys, tmp_path):
    from tests.conftest import run_cli

    code, _, err = run_cli(["board", tmp_path, "--host", "0.0.0.0"], capsys)
    assert code == 2 and "--token" in err


def test_200_runs_and_100k_rows_open_fast(tmp_path):
    """The server's side of docs/board.md's numbers, in CPU time (the browser's side, with the
    page's drawing: tests/board/test_browser.py), held to a plain json read of the big run's
    file measured beside it: reading and downsampling its 100k rows at most twice that, the
    runs list at most half of it, a poll with nothing new under 50 ms."""
    root = many_runs(tmp_path / "many")
    plain = json_read_cpu(root / "big" / "metrics.jsonl")
    runs = Runs([root])
    t0, c0 = time.perf_counter(), time.process_time()
    listed = runs.summaries()
    t_list, c_list = time.perf_counter() - t0, time.process_time() - c0
    assert len(listed) == 201
    t0, c0 = time.perf_counter(), time.process_time()
    curves = runs.get("0:big").curves()
    t_big, c_big = time.perf_counter() - t0, time.process_time() - c0
    assert curves["rows"] == 100_000 and len(curves["series"]["reward/raw"][0]) <= 1500
    t0 = time.perf_counter()
    runs.get("0:big").curves(since=100_000, generation=curves["generation"])  # a poll
    t_poll = time.perf_counter() - t0
    print(f"\n200 runs listed in {t_list:.3f} s ({c_list:.3f} s CPU); 100k rows read and "
          f"downsampled in {t_big:.3f} s ({c_big:.3f} s CPU); a poll with nothing new in "
          f"{t_poll * 1000:.1f} ms; plain json, line by line: {plain:.3f} s CPU")
    # CPU time: the wall time of a shared machine's busy cores says more about the neighbours
    assert c_list <= 0.5 * plain and c_big <= 2 * plain and t_poll < 0.05
