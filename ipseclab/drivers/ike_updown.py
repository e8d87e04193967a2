"""updown scripts: what strongSwan's updown plugin runs when a child SA comes up or goes.

``children.<child>.updown = /path/to/script [args]`` in swanctl.conf runs the command with
``/bin/sh -c`` once for each pair of traffic selectors of the child SA, when it is
established (``PLUTO_VERB=up-client``) and when it is gone (``down-client``), with the
environment strongSwan's ``_updown`` script documents: ``PLUTO_CONNECTION`` (the child's
name), ``PLUTO_REQID``, ``PLUTO_ME``/``PLUTO_PEER`` (the IKE addresses),
``PLUTO_MY_ID``/``PLUTO_PEER_ID``, ``PLUTO_MY_CLIENT``/``PLUTO_PEER_CLIENT`` (the selectors'
subnets) with their ports and protocols, ``PLUTO_MY_SOURCEIP``/``PLUTO_PEER_SOURCEIP``
(virtual IPs), ``PLUTO_UDP_ENC`` (the peer's port with NAT-T), ``PLUTO_HOST_ACCESS``
(``hostaccess = yes``), ``PLUTO_INTERFACE`` (our TUN device) and ``PLUTO_UNIQUEID`` (the IKE
SA's name). The verb is ``up-host``/``down-host`` when our selector is our own IKE address,
with ``-v6`` appended for IPv6, as strongSwan does. A rekey or a reauthentication runs
nothing: the reqid and the traffic the child SA covers stay the same.

Scripts run one at a time, in the order the events came, without blocking the gateway;
one that runs longer than :data:`TIMEOUT` seconds is killed, with what it started (each
script is a process group of its own, killed by its PID as group ID). Their output
goes to the gateway's log. When the gateway stops, the down scripts of the child SAs still
up run before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import subprocess
from dataclasses import dataclass

from ipseclab.ipsec.selectors import TrafficSelector

__all__ = ["TIMEOUT", "UpdownRunner", "UpdownScript", "updown_environment"]

log = logging.getLogger("ipseclab.ike")

TIMEOUT = 20.0  # seconds a script may run
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


@dataclass(frozen=True)
class UpdownScript:
    """A child's ``updown`` command line and its ``hostaccess`` setting."""

    command: str
    hostaccess: bool = False


def _client(ts: TrafficSelector) -> str:
    """A selector's addresses as one subnet, as strongSwan passes them (the first subnet of
    a range that is not one)."""
    return str(ts.networks()[0])


def _port(ts: TrafficSelector) -> str:
    return str(ts.port_start) if ts.port_start == ts.port_end else "0"


def updown_environment(up: bool, *, child: str, reqid: int, interface: str, ike_sa: str,
                       me: tuple[str, int], peer: tuple[str, int], my_id: str, peer_id: str,
                       my_ts: TrafficSelector, peer_ts: TrafficSelector,
                       my_sourceips: list[str] = (),  # type: ignore[assignment]
                       peer_sourceips: list[str] = (),  # type: ignore[assignment]
                       nat: bool = False, hostaccess: bool = False,
                       protocol: str = "esp") -> dict[str, str]:
    """The environment of one updown run (strongSwan's names and formats)."""
    my_client = _client(my_ts)
    host = ipaddress.ip_network(my_client) == ipaddress.ip_network(me[0])
    verb = ("up" if up else "down") + ("-host" if host else "-client") + (
        "-v6" if my_ts.version == 6 else "")
    env = dict(_ENV)
    env.update({
        "PLUTO_VERSION": "1.1", "PLUTO_VERB": verb, "PLUTO_CONNECTION": child,
        "PLUTO_INTERFACE": interface, "PLUTO_REQID": str(reqid), "PLUTO_PROTO": protocol,
        "PLUTO_UNIQUEID": ike_sa, "PLUTO_ME": me[0], "PLUTO_MY_ID": my_id,
        "PLUTO_MY_CLIENT": my_client, "PLUTO_MY_PORT": _port(my_ts),
        "PLUTO_MY_PROTOCOL": str(my_ts.proto), "PLUTO_PEER": peer[0],
        "PLUTO_PEER_ID": peer_id, "PLUTO_PEER_CLIENT": _client(peer_ts),
        "PLUTO_PEER_PORT": _port(peer_ts), "PLUTO_PEER_PROTOCOL": str(peer_ts.proto),
    })
    if my_sourceips:
        env["PLUTO_MY_SOURCEIP"] = " ".join(my_sourceips)
    if peer_sourceips:
        env["PLUTO_PEER_SOURCEIP"] = " ".join(peer_sourceips)
    if nat:
        env["PLUTO_UDP_ENC"] = str(peer[1])
    if hostaccess:
        env["PLUTO_HOST_ACCESS"] = "1"
    return env


class UpdownRunner:
    """Runs updown commands one after another in the background (an asyncio task)."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work())
        self._current: asyncio.subprocess.Process | None = None

    def submit(self, command: str, env: dict[str, str]) -> None:
        self._queue.put_nowait((command, env))

    async def drain(self) -> None:
        """Wait until every submitted command has run (tests, and the gateway's stop)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            command, env = await self._queue.get()
            try:
                await self._run(command, env)
            except Exception:  # a script must never take the gateway down
                log.warning("updown %s: could not run", env.get("PLUTO_VERB"), exc_info=True)
            finally:
                self._queue.task_done()

    async def _run(self, command: str, env: dict[str, str]) -> None:
        verb = env.get("PLUTO_VERB", "?")
        proc = self._current = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            log.warning("updown %s %s: killed after %gs", verb, env.get("PLUTO_CONNECTION"),
                        self.timeout)
            return
        finally:
            self._current = None
        for line in out.decode(errors="replace").splitlines()[:20]:
            log.info("updown %s: %s", verb, line)
        if proc.returncode:
            log.warning("updown %s %s: exit status %d", verb, env.get("PLUTO_CONNECTION"),
                        proc.returncode)

    def close(self, pending_timeout: float = 5.0) -> None:
        """Stop the worker; what is still queued runs now, each for at most
        ``pending_timeout`` seconds (a stopping gateway's down scripts)."""
        self._task.cancel()
        current = self._current
        if current is not None and current.returncode is None:
            _kill_group(current.pid)
        while not self._queue.empty():
            command, env = self._queue.get_nowait()
            try:
                proc = subprocess.Popen(["/bin/sh", "-c", command], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                log.warning("updown %s: %s", env.get("PLUTO_VERB"), exc)
                continue
            try:
                proc.wait(pending_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                log.warning("updown %s: killed after %gs", env.get("PLUTO_VERB"),
                            pending_timeout)


def _kill_group(pid: int) -> None:
    """SIGKILL to the process group a script leads (its PID is the group's ID)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
