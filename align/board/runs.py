"""What ``align board`` reads from run directories, and nothing else: no torch, no model.

A run is a directory holding ``align_config.yaml`` or ``metrics.jsonl`` (``align rlhf``'s
``--output-dir``), found up to :data:`DEPTH` levels under each served root (the quickstart's
stages are ``runs/quickstart/dpo`` ...). For each run:

- its **state** from ``align_status.json`` (:mod:`align.run_status`): ``running``,
  ``finished``, ``collapsed`` (stopped by a health detector), ``stopped`` (Ctrl-C, SIGTERM, the
  board's stop button), ``failed``; a ``running`` status whose process is gone (or is another
  process that took its id) reads ``killed``. A run written before statuses existed reads
  ``finished`` with ``final_metrics.json``, ``running`` while the process in its lock lives,
  else ``ended``;
- its **metrics**, read incrementally (:class:`MetricsTail`: the byte offset of the last whole
  line; a later read parses only what was appended, a file rewritten by ``--resume`` is read
  again) and served downsampled (:func:`downsample`, min and max of each bucket, so a spike
  survives) so that 100k rows open as fast as 100;
- its **health alarms**: the ``health/*`` keys of metrics rows (PPO), the ``[health] step N:
  detector: message. Try: hint`` lines of ``console.log`` and ``final_metrics.json``'s
  ``health_events`` (every algorithm);
- the **sampled answers** of an online run (``samples.jsonl``, :mod:`align.samples`), a few
  per logged step, read incrementally in the same way (:class:`SamplesTail`);
- its checkpoints (:func:`align.checkpoints.scan`) and the console's tail.

Everything is cached by file size and modification time: polling 200 runs every few seconds
reads a few small files per changed run.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from array import array
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from align.checkpoints import scan
from align.metrics import METRICS_FILE
from align.output_dir import CONFIG_FILE, FINAL_FILE, LOCK_FILE
from align.plot import finite_number
from align.run_status import CONSOLE_FILE, STATUS_FILE, read_status
from align.samples import SAMPLES_FILE

DEPTH = 3  # how deep under a root runs are looked for
MAX_POINTS = 1500  # points per curve sent to the page (min and max of each bucket)
TAIL_BYTES = 64 * 1024  # how much of console.log's end is shown
HEALTH_LINE = re.compile(r"\[health\] step (\d+): (\w+): (.*)")
REWARD_KEYS = ("reward/raw", "reward", "rewards/margins", "eval/reward", "rewards/chosen")
LOSS_KEYS = ("loss", "loss/policy", "loss/value")
SKIP_DIRS = {"tensorboard", "wandb", "__pycache__"}


class PathRefused(Exception):
    """A path outside the served directories (the server answers 403)."""


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def is_run(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()


# --- metrics ---------------------------------------------------------------------------------
@dataclass
class JsonlTail:
    """The rows of one JSON-lines file a run appends to (metrics.jsonl, samples.jsonl), read
    incrementally (see the module docstring)."""

    path: Path
    offset: int = 0
    inode: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    generation: int = 0  # bumped when the file was rewritten and read again from the start
    bytes_read: int = 0  # what the last :meth:`update` read (tests check it reads only the new)

    def reset(self) -> None:
        self.rows = []

    def added(self, new: list[dict[str, Any]], health: bool) -> None:
        """Keep the rows ``new`` (``health``: the text read holds a ``health/`` key)."""
        self.rows.extend(new)

    def update(self) -> int:
        """Read what was appended since the last call; return how many rows it added."""
        try:
            st = self.path.stat()
        except OSError:
            return 0
        if st.st_ino != self.inode or st.st_size < self.offset:  # replaced or cut back
            self.inode, self.offset = st.st_ino, 0
            self.reset()
            self.generation += 1
        self.bytes_read = 0
        if st.st_size == self.offset:
            return 0
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read(st.st_size - self.offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        if end == 0:
            return 0
        self.bytes_read = end
        self.offset += end
        text = data[:end].decode("utf-8", errors="replace")
        try:  # one parse for the whole block: several times faster than line by line
            new = json.loads("[" + text.strip().replace("\n", ",") + "]")
        except ValueError:
            new = []
            for line in text.split("\n"):
                try:
                    new.append(json.loads(line))
                except ValueError:
                    continue
        new = [r for r in new if isinstance(r, dict)]
        self.added(new, "health/" in text)
        return len(new)


@dataclass
class MetricsTail(JsonlTail):
    """metrics.jsonl: its rows, and the (step, detector) of its ``health/*`` keys."""

    health: list[tuple[int, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.rows, self.health = [], []

    def added(self, new: list[dict[str, Any]], health: bool) -> None:
        self.rows.extend(new)
        if health:  # most blocks hold none: not looking at every key saves a third of a read
            self.health += [(int(r.get("step", 0)), k.split("/", 1)[1]) for r in new
                            for k in r if k.startswith("health/")]

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows[:50] + self.rows[-50:]:
            for k, v in r.items():
                if k not in ("step", "time") and not k.startswith("health/") \
                        and finite_number(v) is not None:
                    seen[k] = None
        return sorted(seen)

    def steps(self, start: int = 0) -> list[float]:
        """The step of every row from ``start`` on (what :meth:`series` pairs values with)."""
        return array("d", [r.get("step", 0) for r in self.rows[start:]]).tolist()

    def series(self, key: str, start: int = 0, steps: list[float] | None = None
               ) -> tuple[list[float], list[float]]:
        """The finite numbers logged under ``key`` from row ``start`` on, with their steps
        (``steps``: :meth:`steps`, when several keys are read). metrics.jsonl holds numbers,
        and "nan"/"inf" strings for non-finite values (align.metrics): those are left out,
        like bools and rows without the key."""
        rows = self.rows[start:] if start else self.rows
        try:  # the key in every row, the usual case: C loops only
            values = list(map(itemgetter(key), rows))
        except KeyError:
            values = [r.get(key) for r in rows]
        if bool not in set(map(type, values)):
            try:  # a number in every row, the usual case: C loops only, 10x faster
                column = array("d", values)
                if math.isfinite(sum(column)):  # inf - inf and nan - nan poison the sum
                    return steps if steps is not None else self.steps(start), column.tolist()
            except TypeError:  # a row without it (None) or a "nan" string
                pass
        pairs = [(r.get("step", 0), v) for r, v in zip(rows, values)
                 if type(v) in (int, float) and v - v == 0]  # finite: nan - nan is nan
        return [float(s) for s, _ in pairs], [float(v) for _, v in pairs]


@dataclass
class SamplesTail(JsonlTail):
    """samples.jsonl (align/samples.py): its answers by logged step, in step order (the
    writer rewrites the file when a resume or a rollback drops steps, which reads it anew)."""

    by_step: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.rows, self.by_step, self.steps = [], {}, []

    def added(self, new: list[dict[str, Any]], health: bool) -> None:
        for row in new:
            step = row.get("step")
            if not isinstance(step, int):
                continue
            if step not in self.by_step:
                self.by_step[step] = []
                self.steps.append(step)
            self.by_step[step].append(row)


def downsample(steps: list[float], values: list[float], limit: int = MAX_POINTS
               ) -> tuple[list[float], list[float]]:
    """At most ``limit`` points: each of ``limit // 2`` buckets keeps its lowest and highest
    value in step order, so spikes and dips stay visible (what an alarm points at)."""
    n = len(values)
    if n <= limit:
        return steps, values
    buckets = limit // 2
    out_s: list[float] = []
    out_v: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        chunk = values[lo:hi]
        if not chunk:
            continue
        i_min = lo + chunk.index(min(chunk))
        i_max = lo + chunk.index(max(chunk))
        for i in sorted({i_min, i_max}):
            out_s.append(steps[i])
            out_v.append(values[i])
    return out_s, out_v


def tail_summary(path: Path) -> dict[str, Any] | None:
    """The last whole row of a metrics.jsonl, read from its end only (the runs list)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 16384))
            block = fh.read()
    except OSError:
        return None
    merged: dict[str, Any] = {}
    for line in reversed(block.split(b"\n")[1:] if size > 16384 else block.split(b"\n")):
        line = line.strip()
        if not line.startswith(b"{"):
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):  # newest first: the end-of-training summary has no loss
            merged = {**row, **merged}
            if any(k in merged for k in REWARD_KEYS) and any(k in merged for k in LOSS_KEYS):
                break
    return merged or None


# --- state -----------------------------------------------------------------------------------
def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (Unix time), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = float(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
    boot = _boot_time()
    return None if boot is None else boot + ticks / os.sysconf("SC_CLK_TCK")


def alive(pid: int, since: float | None = None) -> bool:
    """Is ``pid`` a live process (and, with ``since``, one started before that time, not a
    later process that took the id of a dead run)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie: finished, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    if since is not None:
        started = process_started(pid)
        if started is not None and started > since + 5:
            return False
    return True


def state_of(run: Path, status: dict[str, Any] | None) -> str:
    """running | finished | collapsed | stopped | failed | killed | ended (see the module)."""
    if status is not None:
        state = str(status.get("state", "ended"))
        if state == "running" and status.get("host") == socket.gethostname() and not alive(
                int(status.get("pid", 0)), status.get("started")):
            return "killed"
        return state
    if (run / FINAL_FILE).is_file():
        return "finished"
    try:
        m = re.match(r"pid (\d+) on (\S+)", (run / LOCK_FILE).read_text())
    except OSError:
        m = None
    if m and m.group(2) == socket.gethostname() and alive(int(m.group(1))):
        return "running"
    return "ended"


# --- one run ---------------------------------------------------------------------------------
class RunDir:
    """One run directory with its cached files (see the module docstring)."""

    def __init__(self, path: Path, rid: str) -> None:
        self.path, self.id = path, rid
        self.metrics = MetricsTail(path / METRICS_FILE)
        self.answers = SamplesTail(path / SAMPLES_FILE)
        self._full: tuple[tuple[int, int], dict[str, Any]] | None = None  # curves() of all rows
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}

    def _cached(self, name: str, load: Any) -> Any:
        p = self.path / name
        try:
            st = p.stat()
        except OSError:
            return None
        sig = (st.st_size, st.st_mtime_ns)
        hit = self._cache.get(name)
        if hit is None or hit[0] != sig:
            try:
                hit = (sig, load(p))
            except (OSError, ValueError, Exception):  # a file being written: try next time
                return hit[1] if hit else None
            self._cache[name] = hit
        return hit[1]

    def config(self) -> dict[str, Any]:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = self._cached(CONFIG_FILE, lambda p: yaml.load(p.read_text(encoding="utf-8"),
                                                             Loader=loader))
        return data if isinstance(data, dict) else {}

    def final(self) -> dict[str, Any]:
        data = self._cached(FINAL_FILE, lambda p: json.loads(p.read_text(encoding="utf-8")))
        return data if isinstance(data, dict) else {}

    def status(self) -> dict[str, Any] | None:
        return self._cached(STATUS_FILE, lambda p: read_status(p.parent))

    def summary(self) -> dict[str, Any]:
        """One line of the runs list (reads small files and metrics.jsonl's last row)."""
        cfg, status = self.config(), self.status()
        last = self._cached(METRICS_FILE, tail_summary) or {}
        step = (status or {}).get("step") or last.get("step")
        total = (status or {}).get("total") or cfg.get("max_steps")
        total = total if isinstance(total, int) and total > 0 else None
        state = state_of(self.path, status)
        left = None
        if state == "running" and status and step and total and status.get("started"):
            spent = float(status.get("updated", time.time())) - float(status["started"])
            left = round(spent / max(step, 1) * (total - step)) if step < total else 0
        reward = next((k for k in REWARD_KEYS if finite_number(last.get(k)) is not None), None)
        loss = next((k for k in LOSS_KEYS if finite_number(last.get(k)) is not None), None)
        return {"id": self.id, "name": self.id.split(":", 1)[1],
                "algo": cfg.get("algo") or (status or {}).get("algo") or "?",
                "model": cfg.get("model") or "", "path": str(self.path),
                "reward_model": cfg.get("reward_model") or "", "state": state,
                "message": (status or {}).get("message", ""),
                "step": step, "total": total,
                "time_left": left, "reward_key": reward,
                "reward": finite_number(last.get(reward)) if reward else None,
                "loss_key": loss, "loss": finite_number(last.get(loss)) if loss else None,
                "updated": self._mtime()}

    def _mtime(self) -> float:
        times = []
        for name in (METRICS_FILE, STATUS_FILE, CONFIG_FILE):
            try:
                times.append((self.path / name).stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    def alarms(self) -> list[dict[str, Any]]:
        """Health alarms: step, detector and message with its hint (see the module)."""
        found: dict[tuple[int, str], str] = {}
        for line in self._cached(CONSOLE_FILE, _health_lines) or []:
            found.setdefault((line[0], line[1]), line[2])
        for text in self.final().get("health_events", []) or []:
            m = HEALTH_LINE.match(str(text))
            if m:
                found.setdefault((int(m.group(1)), m.group(2)), m.group(3))
        for step, detector in self.metrics.health:
            found.setdefault((step, detector), "")
        return [{"step": s, "detector": d, "message": msg} for (s, d), msg in sorted(found.items())]

    def checkpoints(self) -> list[dict[str, Any]]:
        complete, incomplete = scan(self.path)
        return [{"name": c.path.name, "step": c.step, "healthy": c.healthy, "complete": True}
                for c in complete] + [{"name": p.name, "step": None, "healthy": None,
                                       "complete": False} for p in incomplete]

    def log_tail(self, offset: int | None = None) -> dict[str, Any]:
        """The console's end (``offset`` None), or only what was appended after ``offset``."""
        p = self.path / CONSOLE_FILE
        try:
            size = p.stat().st_size
        except OSError:
            return {"text": "", "offset": 0, "reset": offset is not None}
        reset = offset is None or offset > size
        start = max(0, size - TAIL_BYTES) if reset else offset
        with p.open("rb") as fh:
            fh.seek(start)
            data = fh.read(size - start)
        text = data.decode("utf-8", errors="replace")
        # a progress bar redraws with \r: keep the last drawing of each line
        text = "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line
                         for line in text.split("\n"))
        return {"text": text, "offset": size, "reset": reset}

    def curves(self, since: int = 0, generation: int | None = None) -> dict[str, Any]:
        """Every numeric series; from row ``since`` on when the page already has the rest
        (live update), else all of it downsampled."""
        self.metrics.update()
        m = self.metrics
        full = since <= 0 or generation != m.generation or since > len(m.rows)
        start = 0 if full else since
        drawn = (m.generation, len(m.rows))
        if full and self._full is not None and self._full[0] == drawn:
            series = self._full[1]  # the page opened again, nothing appended since
        else:
            series = {}
            every = m.steps(start)
            for key in m.keys():
                steps, values = m.series(key, start, every)
                if full:
                    steps, values = downsample(steps, values)
                if steps:
                    series[key] = [steps, values]
            if full:
                self._full = (drawn, series)
        return {"rows": len(m.rows), "generation": m.generation, "full": full,
                "series": series, "alarms": self.alarms()}

    def samples(self, step: int | None = None, since: int = 0,
                generation: int | None = None) -> dict[str, Any]:
        """The logged steps that have sampled answers (those after the first ``since`` when
        the page already has them, unless the file was rewritten) and the answers of
        ``step`` (None, or a step without answers: the latest)."""
        self.answers.update()
        a = self.answers
        full = since <= 0 or generation != a.generation or since > len(a.steps)
        if step not in a.by_step:
            step = a.steps[-1] if a.steps else None
        return {"count": len(a.steps), "generation": a.generation, "full": full,
                "steps": a.steps if full else a.steps[since:], "step": step,
                "answers": a.by_step.get(step, []) if step is not None else []}

    def detail(self) -> dict[str, Any]:
        return {**self.summary(), "path": str(self.path), "config": self.config(),
                "final": self.final(), "checkpoints": self.checkpoints(),
                "status": self.status() or {}}


def _health_lines(p: Path) -> list[tuple[int, str, str]]:
    with p.open("rb") as fh:  # alarms are few: only lines that hold the marker are decoded
        return [(int(m.group(1)), m.group(2), m.group(3).strip())
                for raw in fh if b"[health] step" in raw
                for m in [HEALTH_LINE.search(raw.decode("utf-8", errors="replace"))] if m]


# --- all runs --------------------------------------------------------------------------------
class Runs:
    """The runs under the served roots, found again at most every :attr:`rescan` seconds."""

    def __init__(self, roots: list[Path], rescan: float = 2.0) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        self.rescan = rescan
        self.found: dict[str, RunDir] = {}
        self.scanned = 0.0

    def run_id(self, path: Path) -> str:
        path = path.resolve()
        for i, root in enumerate(self.roots):
            if inside(path, root):
                rel = path.relative_to(root).as_posix()
                return f"{i}:{rel if rel != '.' else ''}"
        raise PathRefused(f"{path} is not under a served directory")

    def resolve(self, rid: str) -> Path:
        """The directory of run id ``root:relative``; PathRefused when it leaves its root."""
        index, _, rel = rid.partition(":")
        if not index.isdigit() or int(index) >= len(self.roots):
            raise PathRefused(f"no served directory {index!r}")
        root = self.roots[int(index)]
        path = (root / rel).resolve()
        if not inside(path, root):
            raise PathRefused(f"{rel} leaves the served directory {root}")
        return path

    def scan(self, force: bool = False) -> dict[str, RunDir]:
        if not force and time.monotonic() - self.scanned < self.rescan:
            return self.found
        seen: dict[str, RunDir] = {}
        for root in self.roots:
            for path in _walk(root, DEPTH):
                rid = self.run_id(path)
                seen[rid] = self.found.get(rid) or RunDir(path, rid)
        self.found, self.scanned = seen, time.monotonic()
        return seen

    def get(self, rid: str) -> RunDir:
        path = self.resolve(rid)
        found = self.scan()
        if rid not in found:
            if not is_run(path):
                raise KeyError(rid)
            found[rid] = RunDir(path, rid)
        return found[rid]

    def summaries(self) -> list[dict[str, Any]]:
        out = [r.summary() for r in self.scan().values()]
        return sorted(out, key=lambda s: -s["updated"])


def _walk(root: Path, depth: int) -> list[Path]:
    """Run directories under ``root`` (itself included), ``depth`` levels down at most; a run's
    own subdirectories (checkpoints) are not searched."""
    if not root.is_dir():
        return []
    if is_run(root):
        return [root]
    if depth == 0:
        return []
    found = []
    try:
        children = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in children:
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".") \
                and entry.name not in SKIP_DIRS and not entry.name.startswith("checkpoint-"):
            found += _walk(Path(entry.path), depth - 1)
    return found
