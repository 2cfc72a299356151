"""The quickstart's console: one line per stage, with a progress bar and an ETA while it runs.

Each stage's own output (resolved config, TRL's bars, warnings) goes to ``logs/<stage>.log``;
the console keeps one line per stage. While the stage trains, the training loops report their
steps (``align.console.report``) and the line shows ``[#####-----] 120/470 steps, 0:12 left``;
when the stage ends the line says how long it took. On a console that is not a terminal (CI
logs, a pipe) only the final line is written, so the log holds no carriage-return redraws.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterator

NAME_WIDTH = 16
BAR_WIDTH = 24


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class StageLine:
    """One console line for a stage: its name, then a bar redrawn in place on a terminal."""

    def __init__(self, name: str, stream: IO[str], live: bool) -> None:
        self.name, self.stream, self.live = name, stream, live
        self.start = time.time()
        self.phase = ""
        self.unit = "steps"
        self.last_draw = 0.0
        self.width = 0
        self._write(f"  {name:<{NAME_WIDTH}}")

    def _write(self, text: str) -> None:
        if self.live:
            pad = max(0, self.width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()
            self.width = len(text)

    def set_phase(self, phase: str, unit: str = "steps") -> None:
        """Name what the stage does now (e.g. ``evaluating``) and what its bar counts; the bar
        restarts."""
        self.phase, self.unit = phase, unit
        self._write(f"  {self.name:<{NAME_WIDTH}}{phase}")

    def update(self, done: int, total: int) -> None:
        """Redraw the bar: ``done`` of ``total`` steps, the time spent and the time left."""
        now = time.time()
        if not self.live or total <= 0 or (now - self.last_draw < 0.2 and done < total):
            return
        self.last_draw = now
        if not hasattr(self, "_bar_start") or done == 0 or done < getattr(self, "_done", 0):
            self._bar_start, self._bar_from = now, done
        self._done = done
        frac = min(1.0, done / total)
        filled = int(round(frac * BAR_WIDTH))
        spent = now - self._bar_start
        rate = (done - self._bar_from) / spent if spent > 0 else 0.0
        left = f", {_clock((total - done) / rate)} left" if rate > 0 and done < total else ""
        phase = f"{self.phase} " if self.phase else ""
        self._write(f"  {self.name:<{NAME_WIDTH}}{phase}[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"
                    f" {done}/{total} {self.unit}, {_clock(now - self.start)} spent{left}")

    def finish(self, text: str) -> None:
        if self.live:
            self._write(f"  {self.name:<{NAME_WIDTH}}{text}")
            self.stream.write("\n")
        else:
            self.stream.write(f"  {self.name:<{NAME_WIDTH}}{text}\n")
        self.stream.flush()


@contextlib.contextmanager
def stage(name: str, out: Path, timings: dict[str, float], verbose: bool = False,
          live: bool = True) -> Iterator[StageLine]:
    """Time a stage, send its output to ``out/logs/<name>.log`` (unless ``verbose``), keep one
    line with a progress bar on the console; yields the line (for :meth:`StageLine.set_phase`).
    ``live=False`` writes only the final line (stages that run side by side in several
    processes would otherwise redraw over each other's bars)."""
    from align import console

    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    real = sys.stdout
    line = StageLine(name, real, live=live and real.isatty() and not verbose)
    if verbose:
        real.write(f"  {name}\n")
    with log.open("w", encoding="utf-8") as fh, console.listen(line.update):
        redirect: Any = contextlib.ExitStack()
        if not verbose:
            redirect.enter_context(contextlib.redirect_stdout(fh))
            redirect.enter_context(contextlib.redirect_stderr(fh))
        try:
            with redirect:
                yield line
        except BaseException:
            line.finish(f"failed after {time.time() - line.start:.1f} s (log: {log})")
            raise
    timings[name] = time.time() - line.start
    line.finish(f"done in {timings[name]:5.1f} s")
