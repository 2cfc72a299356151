"""``align board [DIR ...]``: serve the runs under DIR (default runs/) on a local web page."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from align.errors import AlignError


@click.command("board")
@click.argument("dirs", nargs=-1, metavar="[DIR ...]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1/localhost needs --token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free one).")
@click.option("--token", metavar="TEXT|auto", help="A secret the page's address must carry "
              "(auto: a random one, printed in the address); required with --host.")
@click.option("--read-only", is_flag=True, help="Watch and compare only: no launch, no stop.")
def board_cmd(dirs: tuple[str, ...], host: str, port: int, token: str | None,
              read_only: bool) -> None:
    """A web page to launch, watch and compare the runs under DIR (default runs/): their
    curves with health alarms, configs, checkpoints, logs and answers (docs/board.md)."""
    try:
        import uvicorn

        from align.board.server import create_app, serve_hosts
    except ImportError as e:
        raise AlignError(f"align board needs the board extra ({e.name} is missing): "
                         "pip install 'align[board]'") from None
    roots = [Path(d).expanduser().resolve() for d in dirs or ("runs",)]
    for root in roots:
        if root.exists() and not root.is_dir():
            raise AlignError(f"{root} is a file; align board serves directories of runs")
    if not dirs:
        roots[0].mkdir(parents=True, exist_ok=True)
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise AlignError(f"no such directory: {', '.join(missing)}")
    local = host in ("127.0.0.1", "localhost", "::1")
    if token == "auto":
        token = secrets.token_urlsafe(16)
    if not local and not token:
        raise AlignError(f"--host {host} lets other machines in: add --token SECRET (or "
                         "--token auto) so that only whoever has the address can use it")
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:  # listening before the address is printed: a browser opened at once gets in
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise AlignError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose "
                         "another --port") from None
    port = sock.getsockname()[1]
    app = create_app(roots, read_only=read_only, token=token,
                     hosts=serve_hosts(host, port))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    click.echo(f"align board: {', '.join(map(str, roots))}"
               f"{' (read-only)' if read_only else ''}\n  open {address}\n  Ctrl-C stops "
               "the board (runs it started go on)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
