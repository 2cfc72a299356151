"""The board's CPU beside a training run (docs/board.md, "Beside a training run").

    python scripts/board_cpu.py QUICKSTART_DIR WORK_DIR     # after `align quickstart`

Trains DPO on the quickstart's SFT model into WORK_DIR/dpo (logging every step), measures its
steps/s for 30 s, then serves WORK_DIR with `align board`, opens the run's page in the system's
Chromium (which polls every 2 s) and measures for 30 s the board process's CPU seconds and the
run's steps/s. WORK_DIR is emptied first.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

qs, root = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
shutil.rmtree(root, ignore_errors=True)
root.mkdir(parents=True)
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
train = subprocess.Popen([sys.executable, "-m", "align", "rlhf", "--algo", "dpo", "--model", str(qs/"sft"),
    "--dataset", str(qs/"data/pairs.jsonl"), "--output-dir", str(root/"dpo"), "--max-steps", "100000",
    "--logging-steps", "1", "--report-to", "none", "--per-device-train-batch-size", "8"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def steps():
    try: return json.loads((root/"dpo/align_status.json").read_text())["step"]
    except Exception: return 0
while steps() < 5: time.sleep(0.5)
# training alone
s0, t0 = steps(), time.time(); time.sleep(30); alone = (steps() - s0) / (time.time() - t0)
board = subprocess.Popen([sys.executable, "-m", "align", "board", str(root), "--port", "0"],
                         stdout=subprocess.PIPE, text=True)
url = None
while url is None:
    m = re.search(r"open (\S+)", board.stdout.readline()); url = m and m.group(1)
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                          args=["--no-sandbox"])
    pg = b.new_page(); pg.goto(url + "#/run/0%3Adpo"); time.sleep(3)
    c0, s0, t0 = cpu(board.pid), steps(), time.time()
    time.sleep(30)
    c1, s1, t1 = cpu(board.pid), steps(), time.time()
    b.close()
print(f"training alone: {alone:.2f} steps/s; with the board open on its page (polling every 2 s): "
      f"{(s1 - s0) / (t1 - t0):.2f} steps/s; board process CPU {c1 - c0:.2f} s over {t1 - t0:.0f} s "
      f"= {100 * (c1 - c0) / (t1 - t0):.1f}% of one core")
board.terminate(); train.terminate(); train.wait(); board.wait()
