"""Fixtures of the board's tests: tiny runs made on the spot, the real `align board` command in
a child process, and the system's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest


def align(args: list[Any]) -> int:
    """Run `align ARGS` in-process (its output goes to pytest's capture); the exit code."""
    from align.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0

CHROMIUM = os.environ.get("ALIGN_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser") or "/usr/bin/chromium"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# the tiny DPO run whose chosen log-probs fall: the displacement alarm fires (as in
# tests/algos/test_offline_health.py), and --on-collapse stop ends it (exit 3)
ALARM_ARGS = ["--max-steps", "80", "--learning-rate", "5e-3", "--per-device-train-batch-size", "8",
              "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--save-steps", "1000",
              "--report-to", "none", "--logging-steps", "4", "--rpo-alpha", "0",
              "--on-collapse", "stop"]


# GRPO on the quickstart's SFT model and prompts, scored by its reward model, logging 3
# sampled answers at each of its 6 steps (samples.jsonl)
GRPO_ARGS = ["--max-steps", "6", "--logging-steps", "1", "--num-generations", "4",
             "--max-completion-length", "16", "--per-device-train-batch-size", "8",
             "--log-samples", "3", "--save-steps", "1000", "--report-to", "none", "--seed", "0"]


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path, pairs_file: Path
              ) -> Path:
    """A served directory: a reduced quickstart (sft, rm, dpo), a DPO run stopped by the
    likelihood-displacement detector and a GRPO run with its sampled answers."""
    root = tmp_path_factory.mktemp("board_runs")
    assert align(["quickstart", "--out", root / "quickstart", "--algos", "dpo",
                  "--scale", "0.2"]) == 0
    assert align(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
                  "--output-dir", root / "dpo-displaced", *ALARM_ARGS]) == 3
    qs = root / "quickstart"
    assert align(["rlhf", "--algo", "grpo", "--model", qs / "sft", "--reward-model", qs / "rm",
                  "--dataset", qs / "data" / "prompts.jsonl", "--output-dir", root / "grpo",
                  *GRPO_ARGS]) == 0
    return root


BIG_KEYS = ["loss/policy", "loss/value", "objective/kl", "reward/raw", "policy/entropy",
            "policy/clipfrac", "rollout/response_len", "lr/actor", "grad/actor_norm"]


def many_runs(root: Path, runs: int = 200, big_rows: int = 100_000) -> Path:
    """``runs`` finished DPO runs of 200 metric rows each, and a PPO run ``big`` with
    ``big_rows`` rows of 9 metrics (docs/board.md, "Fast on big histories")."""
    from align.run_status import write_status

    host = os.uname().nodename
    for i in range(runs):
        run = root / f"run{i:03d}"
        run.mkdir(parents=True)
        (run / "align_config.yaml").write_text(f"algo: dpo\nmodel: m\nlearning_rate: 0.001\n"
                                               f"beta: 0.1\nseed: {i}\n")
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "loss": 1 / s, "rewards/margins": s * 0.1}) + "\n"
            for s in range(1, 201)))
        write_status(run, {"state": "finished", "pid": 1, "host": host, "step": 200,
                           "total": 200})
    big = root / "big"
    big.mkdir()
    (big / "align_config.yaml").write_text("algo: ppo\n")
    with (big / "metrics.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(1, big_rows + 1):
            fh.write(json.dumps({"step": i, "time": 1.0 * i, **{
                k: (i % 97) * 0.01 + j for j, k in enumerate(BIG_KEYS)}}) + "\n")
    return root


class Board:
    """`align board` running in a child process; ``url`` is the address it printed."""

    def __init__(self, roots: list[Path], *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "align", "board", *map(str, roots),
                                      "--port", "0", *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=roots[0])
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            lines.append(line)
            m = re.search(r"open (http://\S+)", line)
            if m:
                self.url = m.group(1)
                self.base = re.match(r"http://[^/]+", self.url).group(0)
                return
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("align board did not start: " + "".join(lines))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def board(runs_root: Path) -> Iterator[Board]:
    b = Board([runs_root])
    yield b
    b.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors  # no JavaScript error on any page a test opened


def open_view(page: Any, url: str, timeout: float = 30_000) -> None:
    """Go to ``url`` and wait until the view has drawn (the page marks #view data-ready)."""
    page.goto("about:blank")  # a fresh load, even when only the hash would change
    page.goto(url)
    page.wait_for_function("(h) => document.getElementById('view').getAttribute('data-ready') "
                           "=== h", arg="#" + url.split("#", 1)[1] if "#" in url else "#/",
                           timeout=timeout)


def screenshot(page: Any, name: str, element: str | None = None) -> Path:
    """A screenshot of the page's top (at most one window high, no empty space below the
    content), or of ``element`` alone: docs/board.md's docs/images/board-NAME.png when
    ALIGN_BOARD_SCREENSHOTS=1 (how they were taken), else a temporary file. Saved with a
    256-colour palette when Pillow is there: a third of the size, the same to the eye."""
    import tempfile

    folder = DOCS_IMAGES if os.environ.get("ALIGN_BOARD_SCREENSHOTS") == "1" else \
        Path(tempfile.mkdtemp(prefix="board-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"board-{name}.png"
    if element is not None:
        page.locator(element).screenshot(path=str(path))
    else:
        size = page.viewport_size
        height = min(size["height"], page.evaluate("document.body.scrollHeight"))
        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": size["width"],
                                              "height": height})
    assert path.stat().st_size > 10_000  # a drawn page, not a blank one
    try:
        from PIL import Image
    except ImportError:
        return path
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def json_read_cpu(path: Path) -> float:
    """CPU seconds this process takes to read ``path`` line by line with Python's json: the
    yardstick the board's own reading is held to, measured on the same machine at the same
    moment (an absolute time would measure the machine and its neighbours, not the board)."""
    start = time.process_time()
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    assert len(rows) == 100_000
    return time.process_time() - start
