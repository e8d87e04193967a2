"""The gateway's control socket: one JSON request per line in, one JSON reply per line out.

``ipseclab ctl`` (and the lab's ``sa_counters`` check) talk to a running gateway through a Unix
socket, ``/run/ipseclab/NAME.sock`` unless ``--control`` says otherwise. The socket is made
with umask 077, so only its owner (root) can connect. This module holds the server side and
nothing of the data path: it hands each request to a handler and writes back
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``. Whatever a client
sends (bad JSON, a huge line, a request the handler chokes on), the gateway goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipseclab.errors import ConfigError, IpsecLabError

log = logging.getLogger("ipseclab.gateway")

CONTROL_DIR = Path("/run/ipseclab")
LINE_LIMIT = 1 << 20  # bytes of one request; a longer line is refused, not buffered


def default_control_path(name: str) -> Path:
    """Where the gateway ``name`` listens unless told otherwise."""
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"gateway name '{name}' cannot name a socket (no '/', not empty)")
    return CONTROL_DIR / f"{name}.sock"


Handler = Callable[[dict[str, Any]], Any]


class ControlServer:
    """A Unix-socket server that answers JSON-line requests with ``handler(request)``."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._bound = False

    async def start(self) -> None:
        """Listen at :attr:`path`; refuse if another gateway answers there already.

        A socket nobody answers on is what a crashed gateway left: it is replaced. Anything at
        the path that is not a socket is left alone and reported.
        """
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"{path} exists and is not a socket; choose another --control")
            try:
                _r, w = await asyncio.open_unix_connection(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
            else:
                w.close()
                raise ConfigError(f"a gateway is already running at {path}")
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, str(path), limit=LINE_LIMIT)
        except OSError as exc:
            raise ConfigError(f"cannot listen at {path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        self._bound = True

    async def close(self) -> None:
        """Stop listening and remove the socket (only if this server made it)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None
        if self._bound:
            self._bound = False
            with contextlib.suppress(OSError):
                self.path.unlink()

    def answer(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line; never raises."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise TypeError("a request is a JSON object")
            return {"ok": True, "result": self.handler(request)}
        except IpsecLabError as exc:
            return {"ok": False, "error": str(exc)}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # a bug in a command must not end the gateway
            log.warning("control request failed", exc_info=True)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than LINE_LIMIT: the stream cannot go on
                    reply = {"ok": False, "error": f"request longer than {LINE_LIMIT} bytes"}
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
                    break
                if not line:
                    break
                reply = self.answer(line)
                try:
                    data = json.dumps(reply).encode()
                except (TypeError, ValueError) as exc:
                    data = json.dumps({"ok": False, "error": f"internal error: {exc}"}).encode()
                writer.write(data + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
