"""The lab from Python (notebooks, tests, the scenario runner).

    with Lab("site-to-site") as lab:
        print(lab.ping("h1", "h2", count=3))
        with lab.capture("wan") as pcap:
            lab.ping("h1", "h2")
        # pcap is complete here

Leaving the ``with`` block tears everything down: on normal exit, on exceptions, on Ctrl-C
(KeyboardInterrupt) and on SIGTERM, which is turned into KeyboardInterrupt inside the block.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.lab.cleanup import signals_raise
from ipseclab.lab.network import LabNode, Network
from ipseclab.lab.topology import GatewaySpec, Topology, load_topology

_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"time=([\d.]+) ms")


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtts: tuple[float, ...]  # milliseconds, one per reply

    @property
    def ok(self) -> bool:
        return self.received > 0

    def __str__(self) -> str:
        avg = f", avg {sum(self.rtts) / len(self.rtts):.3f} ms" if self.rtts else ""
        return f"{self.received}/{self.sent} received{avg}"


@dataclass(frozen=True)
class IperfResult:
    bits_per_second: float
    seconds: float
    udp: bool
    lost_percent: float | None = None
    retransmits: int | None = None

    def __str__(self) -> str:
        extra = f", {self.lost_percent:.1f}% lost" if self.lost_percent is not None else ""
        return f"{self.bits_per_second / 1e6:.1f} Mbit/s over {self.seconds:g} s{extra}"


class Lab:
    """A running topology. ``topology`` is a name in ``topologies/``, a path, or a Topology."""

    def __init__(
        self,
        topology: str | Path | Topology,
        workdir: Path | str | None = None,
        gateways: dict[str, GatewaySpec] | None = None,
        start_gateways: bool = True,
    ) -> None:
        if not isinstance(topology, Topology):
            topology = load_topology(topology)
        self.topology = topology
        self.network = Network(topology, Path(workdir) if workdir else None, dict(gateways or {}))
        self._start_gateways = start_gateways
        self._signals: contextlib.ExitStack | None = None

    def __enter__(self) -> Lab:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(signals_raise())
        try:
            self.network.start()
            if self._start_gateways:
                self.network.start_gateways()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> list[str]:
        """Tear down (idempotent); returns what was removed."""
        try:
            return self.network.stop()
        finally:
            if self._signals is not None:
                self._signals.close()
                self._signals = None

    @property
    def workdir(self) -> Path:
        assert self.network.workdir is not None
        return self.network.workdir

    # nodes and commands

    def node(self, name: str) -> LabNode:
        return self.network.node(name)

    def cmd(self, node: str, *args: str) -> str:
        """Run a command in a node; one argument is a shell line, several are quoted."""
        return self.node(node).cmd(*args)

    def address(self, target: str) -> str:
        """``h2`` (its first address), ``h2:eth0`` (that interface's) or an IP address."""
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(target))
        name, _, ifname = target.partition(":")
        node = self.topology.node(name)
        if not ifname:
            return str(node.primary_address.ip)
        try:
            intf = node.interface(ifname)
        except KeyError:
            raise ConfigError(f"node {name} has no interface {ifname}") from None
        if not intf.addresses:
            raise ConfigError(f"{target} has no address")
        return str(intf.addresses[0].ip)

    # traffic

    def ping(self, src: str, dst: str, count: int = 3, interval: float = 0.2,
             pattern: str | None = None, timeout: float = 1.0) -> PingResult:
        """ICMP echo from ``src`` to ``dst``; ``pattern`` (text, at most 16 bytes) fills the
        payload so a capture can be searched for it. A ``src`` that is an address of a node
        is the pings' source address."""
        args = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", f"{timeout:g}"]
        if _is_address(src):
            args += ["-I", src]
        if pattern:
            args += ["-p", pattern.encode().hex()]
        out = self.node(self.topology.owner(src)).cmd(*args, self.address(dst))
        m = _SUMMARY.search(out)
        if m is None:
            raise IpsecLabError(f"ping from {src} to {dst} failed: {out.strip()[-200:]}")
        return PingResult(int(m.group(1)), int(m.group(2)),
                          tuple(float(x) for x in _RTT.findall(out)))

    def iperf3(self, src: str, dst: str, udp: bool = False, seconds: float = 2.0,
               bandwidth: str = "10M") -> IperfResult:
        """Throughput from ``src`` to ``dst`` with a one-off iperf3 server on ``dst``."""
        addr = self.address(dst)
        server = self.node(self.topology.owner(dst)).popen(
            ["iperf3", "-s", "-1", "-B", addr, "--forceflush"], "iperf3 server",
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(server, b"listening", 5.0, "iperf3 server")
            # --connect-timeout (ms): a tunnel that is down fails the step in seconds, not minutes
            args = ["iperf3", "-c", addr, "-t", f"{seconds:g}", "-J", "--connect-timeout", "3000"]
            if udp:
                args += ["-u", "-b", bandwidth]
            if _is_address(src):
                args += ["-B", src]
            out = self.node(self.topology.owner(src)).cmd(*args)
        finally:
            if server.poll() is None:
                server.terminate()
            server.wait(timeout=5)
        try:
            data = json.loads(out[out.index("{"):])
        except ValueError:
            raise IpsecLabError(f"iperf3 from {src} to {dst}: {out.strip()[-200:]}") from None
        if "error" in data:
            raise IpsecLabError(f"iperf3 from {src} to {dst}: {data['error']}")
        end = data["end"]
        if udp:
            s = end["sum"]
            return IperfResult(s["bits_per_second"], s["seconds"], True, s.get("lost_percent"))
        s = end["sum_received"]
        return IperfResult(s["bits_per_second"], s["seconds"], False,
                           retransmits=end["sum_sent"].get("retransmits"))

    @contextlib.contextmanager
    def capture(self, target: str, path: Path | str | None = None) -> Iterator[Path]:
        """Capture a segment (``wan``) or an interface (``gw1:eth1``) for the block.

        The pcap is complete when the block ends; tcpdump is listening when it begins.
        """
        cap = self.network.start_capture(target, Path(path) if path else None)
        try:
            yield cap.path
        finally:
            self.network.stop_capture(cap)

    # gateways

    def start_gateway(self, name: str) -> None:
        self.network.start_gateway(name)

    def stop_gateway(self, name: str) -> None:
        self.network.stop_gateway(name)

    def restart_gateway(self, name: str) -> None:
        self.network.stop_gateway(name)
        self.network.start_gateway(name)

    def kill_gateway(self, name: str, timeout: float = 5.0) -> int:
        """Kill ``name``'s gateway process with SIGKILL, as a crash would: no DELETE is sent,
        its SAs stay in the peer's tables until dead peer detection (RFC 7296 §2.4) finds
        out. The process is the one the lab started (its recorded handle), by PID. Returns
        the PID. The lab's tear-down still cleans up after the dead gateway."""
        node = self.node(name)
        handle = node.handle
        if handle is None or not node.started:
            raise IpsecLabError(f"{name}: no gateway process of the lab is running there")
        if handle.poll() is not None:
            raise IpsecLabError(f"{name}: its gateway (PID {handle.pid}) has already exited")
        os.kill(handle.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while handle.poll() is None:  # reaps it, so it leaves no zombie behind
            if time.monotonic() > deadline:
                raise IpsecLabError(f"{name}: PID {handle.pid} survived SIGKILL for {timeout:g} s")
            time.sleep(0.02)
        return handle.pid

    def cli(self) -> None:
        """Mininet's interactive command line on this network (node names carry the prefix)."""
        from mininet.cli import CLI

        CLI(self.network._net)


def _wait_for(proc: subprocess.Popen[bytes], marker: bytes, timeout: float, what: str) -> None:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise IpsecLabError(f"{what} did not start: {seen.decode(errors='replace').strip()}")
        if select.select([fd], [], [], left)[0]:
            seen += proc.stdout.read1(4096)  # type: ignore[attr-defined]


def _is_address(target: str) -> bool:
    """Whether a traffic target is an IP address (rather than ``h2`` or ``h2:eth0``)."""
    try:
        ipaddress.ip_address(target)
    except ValueError:
        return False
    return True
