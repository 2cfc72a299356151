"""``align board``: a local web page to launch, watch and compare runs (docs/board.md).

:mod:`~align.board.runs` reads run directories, :mod:`~align.board.launch` builds, checks,
starts and stops runs, :mod:`~align.board.answers` sets two models' answers side by side,
:mod:`~align.board.server` serves the API and the page (``static/``). Needs the ``board`` extra
(Starlette, uvicorn): ``pip install -e ".[board]"``.
"""
