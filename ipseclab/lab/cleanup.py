"""Remove what lab runs leave behind, and nothing else.

Every run writes down what it creates under ``/run/ipseclab/<tag>/``: the PID (and start time,
against PID reuse) of each process it starts, and the prefix ``ipl<tag>`` that all its bridges
and root-namespace links carry. Tear-down reads those records; :func:`clean` does the same for
runs whose owner died (kill -9, a crash), like ``mn -c`` but limited to our own objects.
Processes are ended by recorded PID only, never by name.

Mininet's hosts live in anonymous network namespaces held open by their shell processes, so
killing a run's recorded processes is what removes its namespaces; the veth pairs go with them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

RUN_ROOT = Path(os.environ.get("IPSECLAB_RUN_DIR", "/run/ipseclab"))
PREFIX = "ipl"
_TAG_CHARS = string.ascii_lowercase + string.digits
_OUR_LINK = re.compile(rf"^{PREFIX}([a-z0-9]{{3}})s\d+")


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


@dataclass(frozen=True)
class Recorded:
    pid: int
    start: str
    what: str

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start


class RunDir:
    """The records of one run: owner, processes, and the link prefix it uses."""

    def __init__(self, tag: str, root: Path = RUN_ROOT) -> None:
        self.tag = tag
        self.path = root / tag
        self.prefix = f"{PREFIX}{tag}"

    @classmethod
    def create(cls, root: Path = RUN_ROOT) -> RunDir:
        root.mkdir(parents=True, exist_ok=True)
        while True:
            tag = "".join(secrets.choice(_TAG_CHARS) for _ in range(3))
            try:
                (root / tag).mkdir()
            except FileExistsError:
                continue
            run = cls(tag, root)
            pid = os.getpid()
            (run.path / "owner").write_text(f"{pid} {_start_time(pid)}\n")
            return run

    def owner_alive(self) -> bool:
        try:
            pid, start = (self.path / "owner").read_text().split()
        except (OSError, ValueError):
            return False
        return _start_time(int(pid)) == start

    def record(self, pid: int, what: str) -> None:
        start = _start_time(pid)
        if start is None:
            return
        with open(self.path / "procs", "a") as f:
            f.write(f"{pid} {start} {what}\n")

    def processes(self) -> list[Recorded]:
        try:
            lines = (self.path / "procs").read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            # A line cut short (the owner killed mid-write) must not stop the clean-up.
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0].isdigit():
                out.append(Recorded(int(parts[0]), parts[1], parts[2]))
        return out

    def teardown(self) -> list[str]:
        """Kill the recorded processes still alive, delete our links, drop the records."""
        removed = kill_recorded(self.processes())
        removed += delete_links(lambda name: name.startswith(self.prefix))
        shutil.rmtree(self.path, ignore_errors=True)
        return removed


def kill_recorded(procs: list[Recorded], grace: float = 1.0) -> list[str]:
    """SIGTERM or SIGHUP (to the group if the process leads one), SIGKILL after ``grace``."""
    alive = [p for p in procs if p.alive()]
    for p in alive:
        # Interactive shells (Mininet's namespace holders) ignore SIGTERM but not SIGHUP.
        _signal(p.pid, signal.SIGHUP if p.what.endswith("shell") else signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.alive() for p in alive):
        _reap(alive)
        time.sleep(0.02)
    for p in alive:
        if p.alive():
            _signal(p.pid, signal.SIGKILL)
    time.sleep(0.02)
    _reap(alive)
    return [f"process {p.pid} ({p.what})" for p in alive]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _reap(procs: list[Recorded]) -> None:
    """Collect those of the processes that are our own exited children (no zombies left)."""
    for p in procs:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(p.pid, os.WNOHANG)


def our_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if _OUR_LINK.match(name):
            names.append(name)
    return names


def delete_links(match: Callable[[str], bool]) -> list[str]:
    removed = []
    # Bridges first: their ports are veths that vanish with their namespaces anyway.
    for name in sorted(our_links(), key=len):
        if match(name):
            res = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True)
            if res.returncode == 0:
                removed.append(f"link {name}")
    return removed


def our_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def live_tags(root: Path = RUN_ROOT) -> set[str]:
    if not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if p.is_dir() and RunDir(p.name, root).owner_alive()}


def clean(include_live: bool = False, root: Path = RUN_ROOT) -> list[str]:
    """Remove what dead runs left: their processes, namespaces, bridges and links.

    Runs whose owning process is still alive are left alone unless ``include_live``.
    Returns one line per removed object.
    """
    removed: list[str] = []
    live = set() if include_live else live_tags(root)
    dead: set[str] = set()
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.is_dir() and path.name not in live:
                dead.add(path.name)
                removed += RunDir(path.name, root).teardown()
                removed.append(f"run directory {path}")
    # A link whose run has no record here may belong to a run kept under another
    # IPSECLAB_RUN_DIR: only --all (include_live) removes it; see untracked_links().
    removed += delete_links(lambda n: include_live or _tag(n) in dead)
    # Named namespaces only of runs we know were ours: other tools (tests included) use
    # names that start the same way.
    for ns in our_netns():
        if ns[len(PREFIX) : len(PREFIX) + 3] in dead and _OUR_LINK.match(ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            removed.append(f"netns {ns}")
    return removed


def _tag(link: str) -> str:
    match = _OUR_LINK.match(link)
    return match.group(1) if match else ""


def untracked_links(root: Path = RUN_ROOT) -> list[str]:
    """Links named like ours whose run has no record under ``root``: :func:`clean` leaves
    them, since a run started with another IPSECLAB_RUN_DIR may still be using them."""
    known = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    return [name for name in our_links() if _tag(name) not in known]


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the block, so ``finally`` tear-downs run.

    SIGINT already raises KeyboardInterrupt. Only the main thread may set handlers; elsewhere
    this does nothing.
    """
    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while tearing down, so a second Ctrl-C cannot leave half a lab."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
