"""The frame of a tool that runs inside a lab node: ``ready``, work, one JSON line, exit.

SIGTERM ends the work early and still prints the result, so a caller can stop a listener
as soon as it has what it needs.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any


class Stopped(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise Stopped


def serve(work: Callable[[dict[str, Any]], None], start: float) -> None:
    """Run ``work(result)`` until it returns, the deadline passes (its job) or SIGTERM."""
    result: dict[str, Any] = {}
    signal.signal(signal.SIGTERM, _stop)
    try:
        work(result)
    except Stopped:
        result["stopped"] = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result.setdefault("elapsed", round(time.monotonic() - start, 3))
    print(json.dumps(result), flush=True)


def ready() -> None:
    print("ready", flush=True)


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)


def run(main: Callable[[list[str]], None], usage: str) -> None:
    """``main(sys.argv[1:])``; a missing or malformed argument (the tools take positional
    arguments, as the lab writes them) ends in one error line, the arguments and the usage,
    never a traceback."""
    try:
        main(sys.argv[1:])
    except (IndexError, ValueError) as exc:
        fail(f"error: {exc or 'an argument is missing'}\n"
             f"arguments: {' '.join(sys.argv[1:]) or '(none)'}\n\n{usage}")
