"""What every attack shares: its result, its lab, and the attacker's tools in the namespaces.

An attack runs against the lab's own gateways only: the ``on-path-attacker`` topology (or
another topology named by the attack), built in network namespaces by :class:`Lab`, with
``impl: ipseclab`` gateways keyed manually from ``topologies/attacks/<attack>/<config>/``.
The attack's packets are sent from a node inside the topology (``mallory``, the router the
attacker owns, or a host); the root namespace only computes and reads counters.

The attacker's tools run inside the node as ``python -m ipseclab.attacks.mallory ...``
(:mod:`ipseclab.attacks.mallory`), the lab's own services as ``python -m
ipseclab.attacks.services ...`` (:mod:`ipseclab.attacks.services`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipseclab.errors import ConfigError, IpsecLabError

ATTACKS_DIR = Path(__file__).resolve().parents[2] / "topologies" / "attacks"
TOPOLOGY = "on-path-attacker"
CONFIGS = ("weak", "recommended")


@dataclass
class AttackResult:
    """What one run of an attack shows.

    ``succeeded``: the attack reached its goal (read, forged, replayed ...). ``evidence``: what
    was learned or forged, for the user to read. ``counters``: the receiving gateway's SA
    counters (``auth_failed``, ``replay`` ...), which say why an attack failed.
    """

    name: str
    config: str
    succeeded: bool
    evidence: str
    details: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)

    def report(self) -> str:
        verdict = "SUCCEEDED" if self.succeeded else "FAILED"
        lines = [f"attack {self.name} against the {self.config} configuration: {verdict}",
                 self.evidence]
        for sa, values in self.counters.items():
            shown = ", ".join(f"{k} {v}" for k, v in values.items() if v)
            lines.append(f"  {sa}: {shown or 'all counters 0'}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config, "succeeded": self.succeeded,
                "evidence": self.evidence, "details": self.details, "counters": self.counters}


def check_config(config: str, allowed: tuple[str, ...] = CONFIGS) -> str:
    if config not in allowed:
        raise ConfigError(f"config must be one of {', '.join(allowed)}, not '{config}'")
    return config


def config_dir(attack: str, config: str) -> Path:
    """``topologies/attacks/<attack>/<config>/``: the xfrm files of one configuration."""
    path = ATTACKS_DIR / attack / config
    if not path.is_dir():
        raise ConfigError(f"attack {attack} has no '{config}' configuration ({path})")
    return path


def gateway_specs(directory: Path) -> dict:
    """``impl: ipseclab`` gateways for every ``<node>.xfrm`` file in ``directory``
    (``<node>-<when>.xfrm`` files are loaded later by the attack itself)."""
    from ipseclab.lab.topology import GatewaySpec

    return {p.stem: GatewaySpec("ipseclab", (p,)) for p in sorted(directory.glob("*.xfrm"))
            if "-" not in p.stem}


@contextlib.contextmanager
def attack_lab(attack: str, config: str, workdir: Path | None = None,
               topology: str = TOPOLOGY) -> Iterator[Any]:
    """A running lab whose gateways use the attack's ``config``; torn down on leaving.

    Without a ``workdir`` the lab's files (captures, logs, key log) live in a temporary
    directory that goes with the lab.
    """
    import tempfile

    import ipseclab.lab.ipseclab_gateway  # noqa: F401  registers impl ipseclab
    from ipseclab.lab.api import Lab

    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix=f"ipseclab-{attack}-")))
        with Lab(topology, workdir=workdir,
                 gateways=gateway_specs(config_dir(attack, config))) as lab:
            yield lab


@contextlib.contextmanager
def maybe_lab(lab: Any, attack: str, config: str, workdir: Path | None = None,
              topology: str = TOPOLOGY) -> Iterator[Any]:
    """The caller's lab if it passed one, else a fresh one for this attack and config."""
    if lab is not None:
        yield lab
        return
    with attack_lab(attack, config, workdir, topology) as fresh:
        yield fresh


def reconfigure(lab: Any, node: str, xfrm: Path) -> None:
    """Restart ``node``'s gateway with another ``ip xfrm`` file (what a rekey would give)."""
    from ipseclab.lab.topology import GatewaySpec

    lab.stop_gateway(node)
    lab.node(node).gateway = GatewaySpec("ipseclab", (xfrm,))
    lab.start_gateway(node)


def sa_counters(node: str, direction: str = "in") -> dict[str, dict[str, Any]]:
    """The counters of the gateway's SAs in one direction, keyed ``spi src -> dst``."""
    from ipseclab.lab.ipseclab_gateway import list_sas

    keep = ("packets", "auth_failed", "replay", "too_old", "bad_padding", "malformed",
            "policy_mismatch")
    return {f"{node} {s['direction']} {s['spi']} {s['src']}->{s['dst']} ({s['algorithms']})":
            {k: s.get(k, 0) for k in keep}
            for s in list_sas(node) if s["direction"] == direction}


def total(counters: dict[str, dict[str, Any]], key: str) -> int:
    return sum(int(c.get(key, 0)) for c in counters.values())


# --- tools inside the namespaces ------------------------------------------------------------


class NodeTool:
    """One ``python -m ipseclab.attacks.<module> ...`` process inside a lab node.

    It prints ``ready`` once listening, and one JSON line as its result when it ends.
    """

    def __init__(self, lab: Any, node: str, module: str, *args: str,
                 timeout: float = 10.0) -> None:
        self.node, self.timeout = node, timeout
        self._pending = b""
        cmd = [sys.executable, "-m", f"ipseclab.attacks.{module}", *args]
        self.proc = lab.node(node).popen(cmd, f"{module} {args[0] if args else ''}",
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._ready()

    def _ready(self) -> None:
        # Raw reads: a buffered readline could swallow the result line behind "ready",
        # which communicate() would then never see.
        assert self.proc.stdout is not None
        fd, buf = self.proc.stdout.fileno(), b""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in buf and time.monotonic() < deadline:
            if not select.select([fd], [], [], deadline - time.monotonic())[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
        line, _, self._pending = buf.partition(b"\n")
        if b"ready" not in line:
            self.stop()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise IpsecLabError(f"{self.node}: attack tool did not start: "
                                f"{(line.decode(errors='replace') + err).strip()[-300:]}")

    def result(self) -> Any:
        """Wait for the tool to end (at most ``timeout`` s) and return its JSON result."""
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise IpsecLabError(f"{self.node}: attack tool ran longer than {self.timeout:g} s")\
                from None
        out = self._pending + (out or b"")
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
        if self.proc.returncode != 0 or not lines:
            raise IpsecLabError(f"{self.node}: attack tool failed (exit {self.proc.returncode}): "
                                f"{err.decode(errors='replace').strip()[-300:]}")
        return json.loads(lines[-1])

    def finish(self) -> Any:
        """End the tool now (SIGTERM) and return what it has so far."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.result()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=3)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_tool(lab: Any, node: str, module: str, *args: str, timeout: float = 10.0) -> Any:
    """Run a tool to its end and return its JSON result."""
    tool = NodeTool(lab, node, module, *args, timeout=timeout)
    try:
        return tool.result()
    finally:
        tool.stop()


def send_udp(lab: Any, src: str, dst: str, port: int, messages: list[bytes],
             sport: int = 40000, gap: float = 0.05) -> None:
    """Send UDP messages from host ``src`` to ``dst`` (a node or address), one by one."""
    run_tool(lab, src, "services", "send", lab.address(dst), str(port), str(sport),
             str(gap), *[m.hex() for m in messages])


def settle(seconds: float = 0.3) -> None:
    """Let packets in flight arrive before counters are read."""
    time.sleep(seconds)


def nearest_name(name: str, known: list[str]) -> str:
    """``" (did you mean X?)"`` for the closest known name, or nothing."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
