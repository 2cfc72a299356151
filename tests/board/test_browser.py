"""`align board` end to end in a real browser (the system's Chromium, driven by Playwright):
the runs of a reduced quickstart, a run's curves and its health alarm, two runs compared, a
tiny run launched from the form and one stopped, answers side by side, and paths outside the
served directory refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.board.conftest import Board, open_view, screenshot

pytestmark = pytest.mark.slow


def rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def wait_state(page: Any, run_id: str, states: tuple[str, ...], timeout: float = 240) -> str:
    """Poll the runs list (as the page does) until run ``run_id`` reaches one of ``states``."""
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        found = page.evaluate("async () => (await (await fetch('/api/runs')).json()).runs")
        state = next((r["state"] for r in found if r["id"] == run_id), None)
        if state in states:
            return state
        time.sleep(1)
    raise AssertionError(f"{run_id} stayed {state}, not {states}")


def test_list_shows_the_quickstarts_runs_with_their_status(board: Board, page: Any,
                                                            runs_root: Path):
    open_view(page, board.url + "#/")
    for stage in ("sft", "rm", "dpo"):
        row = page.locator(f'tr[data-run="0:quickstart/{stage}"]')
        assert row.get_attribute("data-state") == "finished"
        assert row.locator(".state").inner_text() == "finished"
        last = rows(runs_root / "quickstart" / stage)[-1]["step"]
        assert row.locator("td.num").first.inner_text() == f"{last} / {last}"
    alarm = page.locator('tr[data-run="0:dpo-displaced"]')
    assert alarm.locator(".state").inner_text() == "stopped by a health detector"
    loss = [r["loss"] for r in rows(runs_root / "quickstart" / "dpo") if "loss" in r][-1]
    dpo = page.locator('tr[data-run="0:quickstart/dpo"] td.num').nth(3).inner_text()
    assert float(dpo) == pytest.approx(loss, rel=1e-3)  # the last loss, as logged
    screenshot(page, "runs")


def test_run_page_draws_every_logged_point_and_marks_the_alarm(board: Board, page: Any,
                                                                runs_root: Path):
    open_view(page, board.url + "#/run/" + "0%3Adpo-displaced")
    logged = rows(runs_root / "dpo-displaced")
    loss_steps = [r["step"] for r in logged if "loss" in r]
    chart = page.evaluate("() => { const c = board.charts['loss']; "
                          "return {x: c.u.data[0], raw: c.u.data[1]}; }")
    assert chart["x"] == loss_steps  # every logged point, at its step
    assert chart["raw"] == pytest.approx([r["loss"] for r in logged if "loss" in r])
    # the displacement alarm: a red mark at its step on the curves, its hint in the list
    mark = page.locator('.panel[data-panel="loss"] .alarm-mark').first
    step = int(mark.get_attribute("data-step"))
    assert mark.get_attribute("data-detector") == "likelihood_displacement"
    assert "Try:" in mark.get_attribute("title") and "--rpo-alpha" in mark.get_attribute("title")
    assert f"[health] step {step}: likelihood_displacement" in \
        (runs_root / "dpo-displaced" / "console.log").read_text()
    box, plot = mark.bounding_box(), page.locator('.panel[data-panel="loss"] .u-over').bounding_box()
    x_of_step = page.evaluate(f"() => board.charts['loss'].u.valToPos({step}, 'x')")
    assert box["x"] + box["width"] / 2 == pytest.approx(plot["x"] + x_of_step, abs=2)
    assert page.locator(f'#alarms li[data-step="{step}"]').inner_text().startswith(
        f"step {step}: likelihood_displacement")
    assert "training stopped by --on-collapse stop" in page.locator("#log").inner_text()
    screenshot(page, "run")


def test_run_page_shows_the_sampled_answers_of_each_logged_step(board: Board, page: Any,
                                                                 runs_root: Path):
    open_view(page, board.url + "#/run/" + "0%3Agrpo")
    written = [json.loads(line) for line in
               (runs_root / "grpo" / "samples.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in written})
    assert steps == [1, 2, 3, 4, 5, 6]

    def shown() -> list[tuple[str, str, float]]:
        cells = page.locator("#sample-answers tr.sample").evaluate_all(
            "rs => rs.map(r => [...r.querySelectorAll('td')].map(td => td.textContent))")
        return [(c[0], c[1], float(page.evaluate("(t) => parseFloat(t)", c[2])))
                for c in cells]

    def expected(step: int) -> list[tuple[str, str, Any]]:
        # chat prompts: the page shows each message as its role and its content
        return [("user" + r["prompt"][-1]["content"], "assistant" + r["answer"][-1]["content"],
                 pytest.approx(r["reward"], abs=5e-3)) for r in written if r["step"] == step]

    page.wait_for_selector("#samples:not([hidden]) tr.sample")
    # the newest step first, its answers as written, with their rewards
    assert page.evaluate("() => board.samples.shown") == 6
    assert "step 6 (6 of 6 logged steps)" in page.locator("#sample-step").inner_text()
    assert shown() == expected(6)
    assert "rm " in page.locator("#sample-answers tr.sample td.reward").first.inner_text()
    screenshot(page, "samples", "#samples")
    page.click("#sample-prev")  # one step back
    page.wait_for_function("() => board.samples.shown === 5")
    assert shown() == expected(5)
    page.locator("#sample-slider").evaluate("(s) => { s.value = 0; "
                                            "s.dispatchEvent(new Event('change')); }")
    page.wait_for_function("() => board.samples.shown === 1")
    assert shown() == expected(1)
    assert page.locator("#sample-prev").is_disabled()
    # a run without samples.jsonl (DPO) has no such panel
    open_view(page, board.url + "#/run/" + "0%3Adpo-displaced")
    assert page.locator("#samples").is_hidden()


def test_compare_overlays_two_runs_and_lists_only_the_flags_that_differ(board: Board,
                                                                         page: Any):
    open_view(page, board.url + "#/")
    page.check('input.pick[value="0:quickstart/dpo"]')
    page.check('input.pick[value="0:dpo-displaced"]')
    page.click("#compare")
    page.wait_for_selector("#differ")
    page.wait_for_function("() => document.getElementById('view').dataset.ready.startsWith("
                           "'#/compare/')")
    chart = page.evaluate("() => board.charts['loss'].series.map(s => s.label)")
    assert sorted(chart) == ["dpo-displaced: loss", "quickstart/dpo: loss"]  # one axis
    flags = page.locator("#differ tr[data-flag]").evaluate_all(
        "rs => rs.map(r => r.dataset.flag)")
    assert "--rpo-alpha" in flags and "--on-collapse" in flags and "--learning-rate" in flags
    assert "--beta" not in flags and "--lora" not in flags  # equal in both: not listed
    screenshot(page, "compare")


def test_launch_a_tiny_run_from_the_form_and_see_it_finish(board: Board, page: Any,
                                                           runs_root: Path, tiny_lm: Path,
                                                           pairs_file: Path):
    open_view(page, board.url + "#/launch")
    page.select_option("#algo", "dpo")
    page.wait_for_selector("#fields[data-algo='dpo'] #f-model")  # dpo's form, not the first
    page.fill("#f-model", str(tiny_lm))
    page.fill("#f-dataset", str(pairs_file))
    page.fill("#f-output_dir", "launched-dpo")
    page.fill("#f-max_steps", "3")
    page.fill("#f-per_device_train_batch_size", "4")
    page.fill("#f-logging_steps", "1")
    page.fill("#f-save_steps", "1000")
    out = runs_root / "launched-dpo"
    page.wait_for_function("() => document.getElementById('command').textContent"
                           ".includes('--max-steps 3')")
    command = page.locator("#command").inner_text()
    assert command.startswith("align rlhf --algo dpo --model ") and f"--output-dir {out}" in command
    screenshot(page, "launch")
    page.click("#start")
    page.wait_for_function("() => location.hash.startsWith('#/run/')", timeout=300_000)
    assert wait_state(page, "0:launched-dpo", ("finished", "failed")) == "finished"
    assert [r["step"] for r in rows(out) if "loss" in r] == [1, 2, 3]
    assert (out / "model.safetensors").is_file()
    open_view(page, board.url + "#/run/0%3Alaunched-dpo")
    assert page.evaluate("() => board.charts['loss'].u.data[0]") == [1, 2, 3]


def test_the_form_refuses_a_failing_dry_run_and_an_output_outside_the_roots(
        board: Board, page: Any, runs_root: Path, tiny_lm: Path, tmp_path: Path):
    open_view(page, board.url + "#/launch")
    page.select_option("#algo", "dpo")
    page.wait_for_selector("#fields[data-algo='dpo'] #f-model")  # dpo's form, not the first
    page.fill("#f-model", str(tiny_lm))
    page.fill("#f-output_dir", str(tmp_path / "outside"))
    page.wait_for_function("() => document.getElementById('command').textContent"
                           ".includes('outside the served directories')")
    page.fill("#f-output_dir", "never-started")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1 + 1 =", "chosen": " 2"}\n')
    page.fill("#f-dataset", str(bad))
    page.click("#start")
    page.wait_for_function("() => document.getElementById('result').textContent"
                           ".startsWith('not started')", timeout=120_000)
    assert "rejected" in page.locator("#result").inner_text()  # the validator names the field
    assert not (runs_root / "never-started").exists()


def test_paths_outside_the_served_directory_are_refused(board: Board, page: Any):
    open_view(page, board.url + "#/")
    for path in ("/api/run/0:../../etc/log", "/api/run/0:..%2F..%2Fetc/curves",
                 "/api/run/1:x", "/static/../../../etc/passwd"):
        status = page.evaluate(f"async () => (await fetch({path!r})).status")
        assert status in (403, 404), (path, status)
    refused = page.evaluate("async () => { const r = await fetch('/api/run/0:..%2F..'); "
                            "return [r.status, (await r.json()).error]; }")
    assert refused[0] == 403 and "leaves the served directory" in refused[1]
    open_view(page, board.url + "#/run/0%3A..%2F..")
    assert "leaves the served directory" in page.locator("#error").inner_text()
    # a change without the board's header (a form on another site) is refused
    status = page.evaluate("async () => (await fetch('/api/launch', {method: 'POST', "
                           "body: '{}'})).status")
    assert status == 403


def test_stop_a_running_run(board: Board, page: Any, runs_root: Path, tiny_lm: Path,
                            pairs_file: Path):
    values = {"model": str(tiny_lm), "dataset": str(pairs_file), "output_dir": "to-stop",
              "max_steps": "100000", "per_device_train_batch_size": "4", "logging_steps": "1",
              "save_steps": "2", "learning_rate": "1e-4"}
    open_view(page, board.url + "#/")
    started = page.evaluate("async (v) => (await fetch('/api/launch', {method: 'POST', headers: "
                            "{'X-Align-Board': '1', 'Content-Type': 'application/json'}, body: "
                            "JSON.stringify({algo: 'dpo', values: v})})).json()", values)
    assert started["started"], started
    out = runs_root / "to-stop"
    wait_state(page, "0:to-stop", ("running",))
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("checkpoint-*/align_checkpoint.json")):
        time.sleep(1)
    open_view(page, board.url + "#/run/0%3Ato-stop")
    page.click("#stop")
    assert wait_state(page, "0:to-stop", ("stopped", "killed", "failed")) == "stopped"
    status = json.loads((out / "align_status.json").read_text())
    assert status["exit_code"] == 130 and status["step"] < 100000
    assert list(out.glob("checkpoint-*/align_checkpoint.json"))  # saved before the stop: kept
    open_view(page, board.url + "#/run/0%3Ato-stop")
    assert page.locator("h1 .state").inner_text() == "stopped"
    assert page.locator("#stop").count() == 0


def test_answers_of_a_model_and_its_baseline_side_by_side(board: Board, page: Any,
                                                          runs_root: Path):
    qs = runs_root / "quickstart"
    open_view(page, board.url + "#/answers")
    page.select_option("#a-model", str(qs / "dpo"))
    assert page.locator("#a-baseline").input_value() == str(qs / "sft")  # where dpo started
    assert page.locator("#a-rm").input_value() == str(qs / "rm")
    page.fill("#a-prompts", "Describe the sea.\nDescribe the city.")
    page.fill("#a-tokens", "12")
    page.click("#a-go")
    page.wait_for_selector("table.answers", timeout=300_000)
    answers = page.locator("tr.answer-row")
    assert answers.count() == 2
    for i in range(2):
        cells = answers.nth(i).locator("td")
        assert "RM score" in cells.nth(0).inner_text() and "RM score" in cells.nth(1).inner_text()
    assert "--compare" in page.locator("#answers pre").inner_text()
    screenshot(page, "answers")


def test_read_only_board_hides_launch_and_refuses_stop(runs_root: Path, page: Any):
    ro = Board([runs_root], "--read-only")
    try:
        open_view(page, ro.url + "#/")
        assert page.locator("#nav-launch").is_hidden()
        status = page.evaluate("async () => (await fetch('/api/run/0:dpo-displaced/stop', "
                               "{method: 'POST', headers: {'X-Align-Board': '1'}})).status")
        assert status == 403
    finally:
        ro.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_open(page: Any, url: str, api: str, board: Board) -> dict[str, float]:
    """Open ``url`` in a fresh page load and time it: ``total``, from the navigation's start
    to the view drawn (the page's files, its API calls and the drawing); ``server``, the
    wall time of the ``api`` call (request sent to the last byte received); ``draw``, from
    that last byte to the view drawn; ``board_cpu``, the board's CPU time meanwhile."""
    cpu = cpu_seconds(board.proc.pid)
    open_view(page, url)
    ready = page.evaluate("() => performance.now()")
    calls = page.evaluate("(api) => performance.getEntriesByType('resource').filter(e => "
                          "e.name.includes(api)).map(e => [e.requestStart, e.responseEnd])",
                          api)
    assert calls, api
    start, end = calls[0]
    return {"total": ready / 1000, "server": (end - start) / 1000,
            "draw": (ready - end) / 1000, "board_cpu": cpu_seconds(board.proc.pid) - cpu}


def test_200_runs_and_a_100k_row_run_open_fast(tmp_path: Path, page: Any):
    """docs/board.md's "Fast on big histories": the runs list of 200 runs, and the page of a
    run with 100,000 metric rows (9 curves), opened in Chromium from a board just started
    (nothing read yet). Printed: each view's times. Asserted, side by side with plain json on
    this machine: the board's CPU time for the first open at most twice a plain line-by-line
    json read of the file (it also downsamples nine curves), the page opened again without new
    rows at most a tenth of that (the downsampled curves are kept), the runs list a tenth, and
    the drawing under a second (at most 1,500 points a curve)."""
    from tests.board.conftest import json_read_cpu, many_runs

    root = many_runs(tmp_path / "many")
    b = Board([root])
    try:
        listed = timed_open(page, b.url + "#/", "/api/runs", b)
        assert page.locator("#runs tbody tr").count() == 201
        plain = json_read_cpu(root / "big" / "metrics.jsonl")
        big = timed_open(page, b.url + "#/run/0%3Abig", "/curves", b)
        assert page.evaluate("() => board.lastCurves.rows") == 100_000
        drawn = page.evaluate("() => board.charts['reward'].u.data[0].length")
        assert 0 < drawn <= 1500  # downsampled: min and max of each of 750 buckets
        again = timed_open(page, b.url + "#/run/0%3Abig", "/curves", b)  # read: cached rows
    finally:
        b.close()
    print(f"\nplain json, line by line: {plain:.2f} s CPU", end="")
    for name, t in (("200 runs listed", listed), ("100k-row run opened", big),
                    ("100k-row run opened again", again)):
        print(f"\n{name}: {t['total']:.2f} s from navigation to drawn; the API call "
              f"{t['server']:.2f} s, drawing after it {t['draw']:.2f} s; board CPU "
              f"{t['board_cpu']:.2f} s", end="")
    assert big["board_cpu"] <= 2 * plain
    assert again["board_cpu"] <= 0.1 * plain and listed["board_cpu"] <= 0.5 * plain
    assert max(t["draw"] for t in (listed, big, again)) < 1.0
