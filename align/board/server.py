"""The board's web server: a JSON API over :mod:`align.board.runs`, :mod:`~align.board.launch`
and :mod:`~align.board.answers`, and the page (``static/``: plain HTML, CSS and JavaScript, no
build step; charts by the vendored uPlot).

Security (docs/board.md, "Security"):

- it listens on 127.0.0.1 unless told otherwise, and another host needs a token
  (``align board --token``: the page's address carries it once, then a cookie; API calls may send
  it as ``X-Board-Token``);
- without a token, a request whose ``Host`` is not the address the board serves is refused (a
  web page cannot reach it through a DNS name of its own that points at 127.0.0.1);
- every request that changes something is a POST with the ``X-Align-Board`` header and a JSON
  body: a form or a script on another site cannot send that without the board's consent
  (no CORS headers are ever given);
- ``--read-only`` refuses launch and stop (and the page hides them);
- files are served only from inside the served directories (runs are named ``ROOT:PATH`` and
  resolved under their root; anything else is 403).
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from align.board import answers, launch
from align.board.runs import PathRefused, Runs
from align.errors import AlignError

STATIC = Path(__file__).with_name("static")
COOKIE = "align_board_token"


class Guard:
    """Host check, token, and the POST header (see the module docstring)."""

    def __init__(self, app: ASGIApp, hosts: set[str], token: str | None) -> None:
        self.app, self.hosts, self.token = app, hosts, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        host = request.headers.get("host", "")
        if self.token is None and host not in self.hosts:
            await JSONResponse({"error": f"host {host!r} refused"}, 403)(scope, receive, send)
            return
        set_cookie = False
        if self.token:
            given = (request.headers.get("x-board-token") or request.cookies.get(COOKIE)
                     or request.query_params.get("token") or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await JSONResponse({"error": "token required: open the address that "
                                             "`align board` printed"}, 401)(scope, receive, send)
                return
            set_cookie = request.query_params.get("token") is not None
        if request.method not in ("GET", "HEAD") and \
                request.headers.get("x-align-board") != "1":
            await JSONResponse({"error": "missing X-Align-Board header"}, 403)(
                scope, receive, send)
            return
        if not set_cookie:
            await self.app(scope, receive, send)
            return
        token = self.token or ""

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; "
                                               "Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _error(e: Exception) -> JSONResponse:
    if isinstance(e, PathRefused):
        return JSONResponse({"error": str(e)}, 403)
    if isinstance(e, KeyError):
        return JSONResponse({"error": f"no run {e.args[0]}"}, 404)
    return JSONResponse({"error": str(e)}, 400)


def create_app(roots: list[Path], *, read_only: bool = False, token: str | None = None,
               hosts: set[str] | None = None) -> Starlette:
    """The board's ASGI app over runs under ``roots``. ``hosts``: the Host headers accepted
    (``align board`` passes its own address)."""
    runs = Runs(roots)
    launcher = launch.Launcher(runs.roots)

    def guarded(fn: Any) -> Any:
        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except (AlignError, PathRefused, KeyError, ValueError) as e:
                return _error(e)
        return endpoint

    def body(request: Request) -> dict[str, Any]:
        import anyio.from_thread

        raw = anyio.from_thread.run(request.body)
        data = json.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("a JSON object, please")
        return data

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    def info(request: Request) -> Response:
        from align.plot import DEFAULT_SMOOTHING, EXACT, PANELS

        return JSONResponse({"roots": [str(r) for r in runs.roots], "read_only": read_only,
                             "algos": launch.algos(), "panels": PANELS, "exact": EXACT,
                             "smoothing": DEFAULT_SMOOTHING})

    def run_list(request: Request) -> Response:
        return JSONResponse({"runs": runs.summaries(),
                             "pending": [] if read_only else launcher.pending()})

    def run_detail(request: Request) -> Response:
        return JSONResponse(runs.get(request.path_params["rid"]).detail())

    def run_curves(request: Request) -> Response:
        q = request.query_params
        gen = q.get("generation")
        return JSONResponse(runs.get(request.path_params["rid"]).curves(
            int(q.get("since", 0)), int(gen) if gen not in (None, "") else None))

    def run_samples(request: Request) -> Response:
        q = request.query_params
        step, gen = q.get("step"), q.get("generation")
        return JSONResponse(runs.get(request.path_params["rid"]).samples(
            int(step) if step not in (None, "") else None, int(q.get("since", 0)),
            int(gen) if gen not in (None, "") else None))

    def run_log(request: Request) -> Response:
        offset = request.query_params.get("offset")
        return JSONResponse(runs.get(request.path_params["rid"]).log_tail(
            int(offset) if offset not in (None, "") else None))

    def compare(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if len(ids) < 2:
            raise AlignError("compare needs two runs or more")
        chosen = [runs.get(i) for i in ids]
        configs = [r.config() for r in chosen]
        keys = sorted({k for c in configs for k in c})
        differ = [{"flag": "--" + k.replace("_", "-"), "values": [c.get(k) for c in configs]}
                  for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1
                  and k != "output_dir"]
        return JSONResponse({"runs": [{**r.summary(), "curves": r.curves()} for r in chosen],
                             "differ": differ})

    def form(request: Request) -> Response:
        return JSONResponse(launch.form(request.path_params["algo"]))

    def writable() -> None:
        if read_only:
            raise PathRefused("this board is read-only (--read-only)")

    def command(request: Request) -> Response:
        data = body(request)
        argv = launch.command(str(data.get("algo")), data.get("values") or {}, runs.roots)
        return JSONResponse({"argv": argv[1:], "command": launch.shown(argv)})

    def check(request: Request) -> Response:
        writable()
        data = body(request)
        argv = launch.command(str(data.get("algo")), data.get("values") or {}, runs.roots)
        return JSONResponse({**launch.check(argv, runs.roots[0]),
                             "command": launch.shown(argv)})

    def start(request: Request) -> Response:
        writable()
        data = body(request)
        argv = launch.command(str(data.get("algo")), data.get("values") or {}, runs.roots)
        result = launcher.start(argv)
        if result.get("started"):
            result["id"] = runs.run_id(Path(result["output_dir"]))
        return JSONResponse({**result, "command": launch.shown(argv)})

    def stop(request: Request) -> Response:
        writable()
        return JSONResponse(launch.stop(runs.get(request.path_params["rid"])))

    def answer(request: Request) -> Response:
        data = body(request)
        prompts = data.get("prompts") or []
        if isinstance(prompts, str):
            prompts = prompts.splitlines()
        return JSONResponse(answers.answer(
            runs.roots, str(data.get("model") or ""), data.get("baseline") or None,
            data.get("reward_model") or None, [str(p) for p in prompts],
            int(data.get("max_new_tokens") or 64)))

    def api(path: str, fn: Any, methods: tuple[str, ...] = ("GET",)) -> Route:
        return Route(path, guarded(fn), methods=list(methods))

    routes = [
        Route("/", index),
        api("/api/info", info),
        api("/api/runs", run_list),
        api("/api/run/{rid:path}/curves", run_curves),
        api("/api/run/{rid:path}/log", run_log),
        api("/api/run/{rid:path}/samples", run_samples),
        api("/api/run/{rid:path}/stop", stop, ("POST",)),
        api("/api/run/{rid:path}", run_detail),
        api("/api/compare", compare),
        api("/api/form/{algo}", form),
        api("/api/command", command, ("POST",)),
        api("/api/check", check, ("POST",)),
        api("/api/launch", start, ("POST",)),
        api("/api/answers", answer, ("POST",)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[
        Middleware(Guard, hosts=hosts or {"127.0.0.1", "localhost"}, token=token)])


def serve_hosts(host: str, port: int) -> set[str]:
    """The Host headers a browser sends to reach ``host:port``."""
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    if host in ("0.0.0.0", "::"):
        import socket

        names |= {socket.gethostname(), socket.getfqdn(), "127.0.0.1", "localhost"}
        try:
            names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    return {f"{n}:{port}" for n in names} | {f"[{n}]:{port}" for n in names if ":" in n}
