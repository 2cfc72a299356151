"""Launch and stop runs from ``align board``: the form, the command, the checks, the process.

- :func:`form` describes an algorithm's flags from the same config dataclasses that make the
  CLI's flags and the docs' tables (:func:`align.config.field_doc`: default, help, source,
  choices, bounds), grouped as ``align rlhf --algo NAME --help`` groups them.
- :func:`command` turns the form's values into an argument list, ``python -m align rlhf
  --algo NAME --flag value ...``: only fields of that algorithm, one list item per value,
  never a shell string; ``--output-dir`` must lie inside a served directory (the board shows
  only those). :func:`shown` is the ``align rlhf ...`` a person would type, for the page.
- :func:`check` runs that command with ``--dry-run`` (flags, config and data validated, no
  model loaded); :func:`start` refuses a command whose dry run fails, then starts it in its own
  session (``start_new_session``: closing the page or the board does not end it) with its
  output in ``ROOT/.board/NAME.log`` until the run keeps its own ``console.log``.
- :func:`stop` sends SIGTERM to a running run's process (its id from ``align_status.json``,
  checked to be a live align process): align takes it as Ctrl-C, so the checkpoints already
  saved stay and ``--resume`` continues from the newest.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from align.board.runs import PathRefused, RunDir, alive, inside, state_of
from align.config import field_doc
from align.errors import AlignError
from align.options import field_types
from align.registry import ALGOS, get_algo

CHECK_TIMEOUT = 300.0  # seconds a dry run may take (it reads and validates the data)
LAUNCH_DIR = ".board"  # under the first served root: the output of launched commands
FIRST = ("model", "ref_model", "reward_model", "dataset", "output_dir", "max_steps",
         "learning_rate", "per_device_train_batch_size", "logging_steps", "save_steps")
HIDDEN = {"resume_from", "data_hash"}  # set by the run itself, never a flag


def _type_name(tp: Any) -> str:
    return {bool: "bool", int: "int", float: "float"}.get(tp, "str")


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def fields(algo: str) -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """{field name: (group, field, type)} of every flag ``algo`` takes."""
    out = {}
    for group, cls in get_algo(algo).groups().items():
        types = field_types(cls)
        for f in dataclasses.fields(cls):
            if f.name not in HIDDEN and f.init:
                out.setdefault(f.name, (group, f, types[f.name]))
    return out


def form(algo: str) -> dict[str, Any]:
    """The launch form of ``algo``: its groups of fields, each with what the CLI's --help and
    the docs show (flag, type, default, help, source, choices, bounds)."""
    spec = get_algo(algo)
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, (group, f, tp) in fields(algo).items():
        doc = field_doc(f)
        if name in spec.default_lrs:
            doc["default"] = spec.default_learning_rate(name, lora=False)
        groups.setdefault(group, []).append({
            "name": name, "flag": doc["flag"], "type": _type_name(tp),
            "default": _jsonable(doc["default"]), "help": doc["help"],
            "source": doc["source"] or "", "choices": doc["choices"],
            "bounds": doc["bounds"], "metavar": f.metadata.get("metavar") or "",
            "first": name in FIRST})
    return {"algo": spec.name, "summary": spec.summary, "data_format": spec.data_format,
            "reward_model": spec.reward_model, "groups": groups}


def algos() -> list[dict[str, str]]:
    return [{"name": s.name, "summary": s.summary} for s in ALGOS.values()]


def _value(name: str, tp: Any, value: Any) -> str:
    if tp is int:
        if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
            raise AlignError(f"--{name.replace('_', '-')}: {value!r} is not a whole number")
    elif tp is float:
        try:
            float(value)
        except (TypeError, ValueError):
            raise AlignError(f"--{name.replace('_', '-')}: {value!r} is not a number") from None
    text = str(value).strip()
    if "\n" in text or "\x00" in text:
        raise AlignError(f"--{name.replace('_', '-')}: one line, please")
    return text


def command(algo: str, values: dict[str, Any], roots: list[Path]) -> list[str]:
    """The argument list of ``align rlhf --algo ALGO`` with the form's ``values`` (see the
    module docstring); AlignError for an unknown field or a bad value, PathRefused for an
    output directory outside the served ones."""
    spec = get_algo(algo)
    known = fields(spec.name)
    argv = [sys.executable, "-m", "align", "rlhf", "--algo", spec.name]
    out = str(values.get("output_dir") or "").strip()
    if not out:
        raise AlignError("--output-dir is required: where the run writes (inside "
                         f"{', '.join(map(str, roots))})")
    path = Path(out).expanduser()
    path = (path if path.is_absolute() else roots[0] / path).resolve()
    if not any(inside(path, r) for r in roots):
        raise PathRefused(f"--output-dir {path} is outside the served directories "
                          f"({', '.join(map(str, roots))})")
    values = {**values, "output_dir": str(path)}
    for name, value in values.items():
        if name not in known:
            raise AlignError(f"--algo {spec.name} has no flag --{name.replace('_', '-')}")
        _, f, tp = known[name]
        flag = "--" + name.replace("_", "-")
        if tp is bool:
            if value in (None, ""):
                continue
            on = value is True or str(value).lower() in ("true", "1", "yes", "on")
            argv.append(flag if on else f"--no-{name.replace('_', '-')}")
            continue
        if value is None or str(value).strip() == "":
            continue
        argv += [flag, _value(name, tp, value)]
    return argv


def shown(argv: list[str]) -> str:
    """The command as a person types it (``align rlhf ...``), quoted for a POSIX shell."""
    return "align " + " ".join(shlex.quote(a) for a in argv[3:])


def output_dir_of(argv: list[str]) -> Path:
    return Path(argv[argv.index("--output-dir") + 1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"  # the log shows lines as they are printed
    return env


def check(argv: list[str], cwd: Path) -> dict[str, Any]:
    """Run the command with --dry-run; {"ok", "exit_code", "output"}."""
    try:
        done = subprocess.run(argv + ["--dry-run"], cwd=cwd, env=_env(), capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "exit_code": None,
                "output": f"the dry run took more than {CHECK_TIMEOUT:.0f} s"}
    output = (done.stdout + ("\n" if done.stdout and done.stderr else "") + done.stderr).strip()
    return {"ok": done.returncode == 0, "exit_code": done.returncode, "output": output}


class Launcher:
    """The processes this board started (reaped as they end, so none lingers as a zombie)."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self.children: dict[int, dict[str, Any]] = {}

    def start(self, argv: list[str]) -> dict[str, Any]:
        out = output_dir_of(argv)
        if out.exists() and any(p for p in out.iterdir()):
            raise AlignError(f"--output-dir {out} is not empty: choose a new directory (the "
                             "board never overwrites a run)")
        result = check(argv, self.roots[0])
        if not result["ok"]:
            return {"started": False, **result}
        logs = self.roots[0] / LAUNCH_DIR
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        with log.open("w", encoding="utf-8") as fh:
            proc = subprocess.Popen(argv, cwd=self.roots[0], env=_env(), stdin=subprocess.DEVNULL,
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.children[proc.pid] = {"proc": proc, "out": str(out), "log": str(log),
                                   "started": time.time()}
        return {"started": True, "pid": proc.pid, "output_dir": str(out), "log": str(log),
                **result}

    def reap(self) -> None:
        for pid, child in list(self.children.items()):
            if child["proc"].poll() is not None:
                child["exit_code"] = child["proc"].returncode

    def pending(self) -> list[dict[str, Any]]:
        """Launched commands whose run has no status yet (still loading) or that ended
        before it had one (their log says why)."""
        self.reap()
        out = []
        for pid, child in self.children.items():
            if not (Path(child["out"]) / "align_status.json").exists():
                out.append({"pid": pid, "output_dir": child["out"], "log": child["log"],
                            "exit_code": child.get("exit_code")})
        return out


def stop(run: RunDir) -> dict[str, Any]:
    """SIGTERM to the process of a running run (see the module docstring)."""
    status = run.status()
    if status is None or state_of(run.path, status) != "running":
        raise AlignError(f"{run.path} is not running")
    pid = int(status.get("pid", 0))
    if not alive(pid, status.get("started")):
        raise AlignError(f"{run.path}: its process {pid} is gone")
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
    except OSError:
        cmdline = []
    if cmdline and not any(b"align" in part for part in cmdline):
        raise AlignError(f"process {pid} is not an align run; not stopping it")
    os.kill(pid, signal.SIGTERM)
    return {"stopped": True, "pid": pid}
