"""Network configuration through the ``ip`` command, with every change undone on exit.

The gateway changes addresses, routes, policy-routing rules and sysctls of the namespace it
runs in. Each change is recorded with the command that reverses it; :meth:`NetConf.undo`
runs those in reverse order, and keeps going when one fails (the device may already be
gone), so a daemon that stops, crashes or is signalled leaves the namespace as it found it.

A daemon killed with SIGKILL undoes nothing. Devices and rules it made can be recognised and
removed by the next run, but a sysctl cannot: ``ip_forward`` is 1, and was it 1 before? So the
old values are also written to a journal file (:meth:`NetConf.keep_journal`); the next run
with the same journal in the same network namespace puts them back before it starts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ipseclab.errors import IpsecLabError

log = logging.getLogger(__name__)


class NetConfError(IpsecLabError):
    """An ``ip`` command or a sysctl write failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; on failure raise one clear line with ip's own message."""
    cmd = ["ip", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise NetConfError("the 'ip' command (iproute2) is not installed") from None
    if check and proc.returncode != 0:
        raise NetConfError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip()}")
    return proc


def local_addresses() -> set[str]:
    """Every address configured on an interface of this namespace, as text."""
    proc = ip("-j", "addr", "show", check=False)
    try:
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return set()
    return {a["local"] for link in data for a in link.get("addr_info", []) if "local" in a}


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _netns_id() -> str:
    """Which network namespace this process is in (the inode of its namespace file)."""
    st = os.stat("/proc/self/ns/net")
    return f"{st.st_dev}:{st.st_ino}"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NetConf:
    """Applies changes and remembers how to undo them (last in, first out)."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Sequence[str]]] = []
        self._journal: Path | None = None

    def keep_journal(self, path: Path) -> list[str]:
        """From now on keep the old values of changed sysctls in ``path`` too.

        If ``path`` holds the journal of a run that died without undoing (its process is
        gone) in this network namespace, its values are put back first; the return value
        says which (``["net.ipv4.ip_forward=0"]``), for the log.
        """
        restored = []
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable sysctl journal %s: %s", path, exc)
            data = None
        if (isinstance(data, dict) and data.get("netns") == _netns_id()
                and data.get("pid") != os.getpid() and not _alive(data.get("pid"))
                and isinstance(data.get("sysctls"), dict)):
            for name, old in data["sysctls"].items():
                try:
                    _sysctl_path(str(name)).write_text(str(old))
                    restored.append(f"{name}={old}")
                except OSError as exc:
                    log.warning("cannot restore %s=%s: %s", name, old, exc.strerror)
        self._journal = path
        self._write_journal()
        return restored

    def _write_journal(self) -> None:
        if self._journal is None:
            return
        # Oldest first: a sysctl changed twice keeps the value from before the first change.
        old = {}
        for kind, args in self._undo:
            if kind == "sysctl":
                old.setdefault(args[0], args[1])
        try:
            if not old:
                self._journal.unlink(missing_ok=True)
                return
            part = self._journal.with_name(self._journal.name + ".part")
            part.write_text(json.dumps({"pid": os.getpid(), "netns": _netns_id(),
                                        "sysctls": old}) + "\n")
            part.replace(self._journal)
        except OSError as exc:
            log.warning("cannot write the sysctl journal %s: %s", self._journal, exc.strerror)

    def run(self, args: Sequence[str], undo: Sequence[str] | None = None) -> None:
        """Run ``ip ARGS`` and, if given, remember ``ip UNDO`` to reverse it."""
        ip(*args)
        if undo is not None:
            self._undo.append(("ip", tuple(undo)))

    def sysctl(self, name: str, value: str) -> None:
        """Set a sysctl (``net.ipv4.ip_forward``), restoring the old value on undo."""
        path = _sysctl_path(name)
        try:
            old = path.read_text().strip()
            if old != value:
                path.write_text(value)
                self._undo.append(("sysctl", (name, old)))
                self._write_journal()
        except OSError as exc:
            raise NetConfError(f"cannot set {name}={value}: {exc.strerror}") from None

    def forget(self, undo: Sequence[str]) -> bool:
        """Run one remembered undo now (a route removed while running); False if unknown."""
        entry = ("ip", tuple(undo))
        if entry not in self._undo:
            return False
        self._undo.remove(entry)
        ip(*undo, check=False)
        return True

    def undo(self) -> None:
        """Reverse every recorded change, newest first; errors are logged, not raised."""
        while self._undo:
            kind, args = self._undo.pop()
            if kind == "sysctl":
                name, old = args
                try:
                    _sysctl_path(name).write_text(old)
                except OSError as exc:
                    log.debug("restoring %s=%s: %s", name, old, exc.strerror)
            else:
                proc = ip(*args, check=False)
                if proc.returncode != 0:
                    log.debug("undo 'ip %s': %s", " ".join(args), proc.stderr.strip())
        self._write_journal()  # nothing left to undo: the journal goes
