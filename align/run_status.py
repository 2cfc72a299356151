"""What a run tells a watcher (``align board``) about itself while it goes on.

Two files in the output directory, next to ``metrics.jsonl``:

- ``align_status.json``: the run's state (``running``, then ``finished``, ``collapsed`` for a
  stop by a health detector, ``stopped`` for Ctrl-C or SIGTERM, ``failed`` for an error), its
  process id and host (a ``running`` status whose process is gone was killed), the step of the
  total (from the progress the training loops report, :func:`align.console.report`), and at the
  end the exit code and the error's first line. Written atomically, at most every
  :data:`WRITE_EVERY` seconds while training, so a reader never sees half a file;
- ``console.log``: what the run printed (stdout and stderr), from the resolved config on, so a
  run started in a terminal can be read from a page. The ``[health]`` lines in it carry each
  alarm's step and hint.

:func:`recording` does both around a run (``align/runner.py`` wraps the training in it), and
takes SIGTERM as Ctrl-C for its duration (a stop from ``align board`` or ``kill`` ends the run as
Ctrl-C does: checkpoints already saved stay, ``--resume`` continues from the newest).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from align import console

STATUS_FILE = "align_status.json"
CONSOLE_FILE = "console.log"
WRITE_EVERY = 2.0  # seconds between two progress writes of the status file
EXIT_CODES = {"finished": 0, "collapsed": 3, "stopped": 130}


def write_status(out: Path, status: dict[str, Any]) -> None:
    """Replace ``out/align_status.json`` at once (write a temporary file, then rename)."""
    tmp = out / f".{STATUS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(status, default=str), encoding="utf-8")
    os.replace(tmp, out / STATUS_FILE)


def read_status(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Tee(io.TextIOBase):
    """A text stream that writes to the stream it replaces and to the console log."""

    def __init__(self, stream: TextIO, sink: "ConsoleTee") -> None:
        self.stream, self.sink = stream, sink

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # a text stream refuses bytes (click probes with b"")
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.sink.add(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        self.sink.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class ConsoleTee:
    """Copies sys.stdout and sys.stderr into a file: held in memory until :meth:`attach` names
    the file (the output directory does not exist yet when a run starts printing)."""

    def __init__(self) -> None:
        self.buffer: list[str] | None = []
        self.fh: TextIO | None = None
        self.lock = threading.Lock()
        self.saved: tuple[TextIO, TextIO] | None = None

    def start(self) -> "ConsoleTee":
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Tee(sys.stdout, self), _Tee(sys.stderr, self)
        return self

    def add(self, text: str) -> None:
        with self.lock:
            if self.fh is not None:
                self.fh.write(text)
            elif self.buffer is not None:
                self.buffer.append(text)

    def flush(self) -> None:
        with self.lock:
            if self.fh is not None:
                self.fh.flush()

    def attach(self, path: Path, append: bool = False) -> None:
        with self.lock:
            self.fh = path.open("a" if append else "w", encoding="utf-8")
            self.fh.write("".join(self.buffer or []))
            self.fh.flush()
            self.buffer = None

    def stop(self) -> None:
        if self.saved is not None:
            if isinstance(sys.stdout, _Tee) and sys.stdout.sink is self:
                sys.stdout = self.saved[0]
            if isinstance(sys.stderr, _Tee) and sys.stderr.sink is self:
                sys.stderr = self.saved[1]
            self.saved = None
        with self.lock:
            if self.fh is not None:
                self.fh.close()
                self.fh = None
            self.buffer = None


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Recorder:
    """The status of one run, written to its output directory."""

    def __init__(self, out: Path, algo: str, resumed: bool) -> None:
        self.out = out
        self.last_write = 0.0
        self.status: dict[str, Any] = {
            "state": "running", "pid": os.getpid(), "host": socket.gethostname(),
            "algo": algo, "started": round(time.time(), 3), "updated": round(time.time(), 3),
            "step": 0, "total": None, "resumed": resumed, "argv": sys.argv[1:]}
        self.write()

    def write(self) -> None:
        self.status["updated"] = round(time.time(), 3)
        self.last_write = time.monotonic()
        try:
            write_status(self.out, self.status)
        except OSError:
            pass  # a status is a courtesy to a watcher: it never stops a run

    def progress(self, done: int, total: int) -> None:
        self.status["step"], self.status["total"] = int(done), int(total)
        if time.monotonic() - self.last_write >= WRITE_EVERY:
            self.write()

    def end(self, state: str, message: str = "", exit_code: int | None = None) -> None:
        self.status.update(state=state, ended=round(time.time(), 3),
                           exit_code=EXIT_CODES.get(state, 1) if exit_code is None else exit_code)
        if message:
            self.status["message"] = message
        self.write()


def end_state(error: BaseException | None) -> tuple[str, str, int | None]:
    """(state, first line of the message, exit code) for a run that ended with ``error``."""
    if error is None:
        return "finished", "", 0
    if isinstance(error, KeyboardInterrupt):
        return "stopped", "stopped by Ctrl-C or SIGTERM", 130
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    code = getattr(error, "exit_code", None)
    if code == 3:  # CollapseStop (align.health.monitor), named by its exit code: no import up
        return "collapsed", first, 3
    if isinstance(error, SystemExit):
        return ("finished", "", 0) if not error.code else ("failed", first, int(error.code) if
                                                           isinstance(error.code, int) else 1)
    return "failed", first, code if isinstance(code, int) else 1


@contextlib.contextmanager
def recording(tee: ConsoleTee, out: Path, algo: str, resumed: bool) -> Iterator[Recorder]:
    """Around a run's training: the console log (appended to on --resume), the status file,
    the progress of the training loop, and SIGTERM taken as Ctrl-C."""
    tee.attach(out / CONSOLE_FILE, append=resumed)
    rec = Recorder(out, algo, resumed)
    error: BaseException | None = None
    try:
        with sigterm_as_interrupt(), console.listen(rec.progress):
            yield rec
    except BaseException as e:
        error = e
        raise
    finally:
        state, message, code = end_state(error)
        rec.end(state, message, code)
        if message:  # printed by `align`'s main after the run: the log gets it here
            tee.add(f"{'error: ' if state in ('failed', 'collapsed') else ''}{message}\n")
            tee.flush()
