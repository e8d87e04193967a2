"""Build a Mininet network from a :class:`~ipseclab.lab.topology.Topology`, and take it down.

Every node becomes a Mininet host (its own network namespace); gateways, routers and NAT nodes
forward IPv4 and IPv6. Every segment becomes a Linux bridge named like the segment, and all
bridges live in one more namespace of their own, the *fabric*, rather than in the root namespace:
there they cannot meet the machine's own firewall (br_netfilter sends bridged frames through the
root namespace's iptables) or its own addresses (a machine may itself sit in 192.0.2.0/24), and
a run leaves nothing named in the root namespace. Mininet's node names carry the run's prefix
``ipl<tag>-`` so ``ps`` shows which run a shell belongs to; :mod:`ipseclab.lab.cleanup` ends a
run by the PIDs it recorded, and the namespaces go with their last process.

Gateway programs are started by a :class:`GatewayLauncher` chosen by the gateway's ``impl``.
Only ``none`` (plain forwarding) is built in; the IPsec daemons register theirs with
:func:`register_launcher`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import shlex
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.lab.capture import Capture
from ipseclab.lab.cleanup import RunDir, kill_recorded, signals_deferred
from ipseclab.lab.topology import GatewaySpec, Node, Topology
from ipseclab.lab.yamlnodes import nearest


class ProcessHandle(Protocol):
    """What a launcher returns: a ``subprocess.Popen`` does."""

    pid: int

    def poll(self) -> int | None: ...


# --- mininet glue ---------------------------------------------------------------------------


def _mininet() -> Any:
    try:
        from mininet import net as mn_net
    except ImportError as exc:
        raise IpsecLabError(
            f"Mininet is not importable ({exc}); run scripts/setup.sh or apt-get install mininet"
        ) from None
    return mn_net


# --- gateway launchers ----------------------------------------------------------------------


class GatewayLauncher(ABC):
    """Starts and stops the program that protects one node's traffic (one launcher per node)."""

    @abstractmethod
    def start(self, node: LabNode, gateway: GatewaySpec, workdir: Path) -> ProcessHandle | None:
        """Start the program inside ``node``; processes must be started with ``node.popen``."""

    @abstractmethod
    def stop(self) -> None:
        """Stop it again; called once per start, also during an emergency tear-down."""

    # Two halves of start, so that Network.start_gateways can start many gateways at once and
    # wait for them together. A launcher whose program can be started without waiting for it
    # overrides both; the default does the whole start in the first half.

    def parallel(self, gateway: GatewaySpec) -> bool:
        """Whether this program may start alongside others: True only if it sends nothing on
        its own (an IKE daemon that initiates at once would meet peers not yet listening, and
        their ICMP port unreachable would show in the captures)."""
        return False

    def spawn(self, node: LabNode, gateway: GatewaySpec, workdir: Path) -> None:
        """Start the program in ``node`` without waiting for it to be ready."""
        self._spawned = self.start(node, gateway, workdir)

    def wait_ready(self) -> ProcessHandle | None:
        """Wait until the program :meth:`spawn` started is ready (stopping it if it fails)."""
        return getattr(self, "_spawned", None)


class NoopLauncher(GatewayLauncher):
    """impl none: the node only forwards, as a plain router."""

    def start(self, node: LabNode, gateway: GatewaySpec, workdir: Path) -> ProcessHandle | None:
        return None

    def stop(self) -> None:
        pass


_LAUNCHERS: dict[str, Callable[[], GatewayLauncher]] = {"none": NoopLauncher}


def register_launcher(impl: str, factory: Callable[[], GatewayLauncher]) -> None:
    """Make ``impl: NAME`` usable in topologies and scenarios."""
    _LAUNCHERS[impl] = factory


def launcher_for(impl: str, where: str | None = None) -> GatewayLauncher:
    from ipseclab.lab.launchers import load_launchers

    load_launchers()
    try:
        factory = _LAUNCHERS[impl]
    except KeyError:
        raise ConfigError(
            f"impl {impl} not available yet: no gateway launcher is registered for it "
            f"(ipseclab.lab.network.register_launcher)", file=where
        ) from None
    return factory()


# --- nodes ----------------------------------------------------------------------------------


@dataclass
class LabNode:
    """A running node: the topology's description plus its Mininet host."""

    spec: Node
    mn: Any
    run: RunDir
    gateway: GatewaySpec | None = None
    launcher: GatewayLauncher | None = None
    handle: ProcessHandle | None = None
    started: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        """PID of the shell that holds the node's namespace (for ``nsenter -t PID -n``)."""
        return int(self.mn.pid)

    def cmd(self, *args: str, check: bool = False) -> str:
        """Run a command in the node's namespace and return its output (stdout and stderr).

        With one argument the string is a shell command line; with several they are quoted.
        """
        line = args[0] if len(args) == 1 else shlex.join(args)
        if not check:
            return str(self.mn.cmd(line))
        out = str(self.mn.cmd(line + "; echo __rc=$?"))
        body, _, rc = out.rpartition("__rc=")
        if rc.strip() != "0":
            raise IpsecLabError(f"{self.name}: '{line}' failed: {body.strip()}")
        return body

    def popen(self, args: list[str], what: str = "", **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a process in the node's namespace, recorded so tear-down can end it."""
        proc: subprocess.Popen[bytes] = self.mn.popen(args, **kwargs)
        self.run.record(proc.pid, f"{self.name}: {what or args[0]}")
        return proc


# --- the network ----------------------------------------------------------------------------


@dataclass
class Network:
    """A topology brought to life. ``start()`` builds it, ``stop()`` (idempotent) removes it."""

    topology: Topology
    workdir: Path | None = None
    gateways: dict[str, GatewaySpec] = field(default_factory=dict)
    nodes: dict[str, LabNode] = field(default_factory=dict, init=False)
    _fabric: Any = field(default=None, init=False)
    run: RunDir | None = field(default=None, init=False)
    _net: Any = field(default=None, init=False)
    _captures: list[Capture] = field(default_factory=list, init=False)
    _own_workdir: bool = field(default=False, init=False)  # made by start(), removed if empty

    def gateway_spec(self, name: str) -> GatewaySpec | None:
        return self.gateways.get(name, self.topology.node(name).gateway)

    def start(self) -> None:
        """Build everything; on any failure, tear down what was built and re-raise."""
        where = str(self.topology.path) if self.topology.path else None
        for name in self.gateways:
            self.topology.node(name)
        launchers = {}
        for node in self.topology.nodes.values():
            spec = self.gateway_spec(node.name)
            if spec is not None:
                launchers[node.name] = launcher_for(spec.impl, where)
        if os.geteuid() != 0:
            raise IpsecLabError("the lab needs root (network namespaces); try sudo")
        mn_net = _mininet()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="ipseclab-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        _raise_nofile()
        self.run = RunDir.create()
        atexit.register(self.stop)
        try:
            # Mininet.init() would tune machine-wide sysctls (fixLimits); we do not need them.
            mn_net.Mininet.inited = True
            self._net = mn_net.Mininet(
                topo=None, controller=None, build=False,
                autoSetMacs=False, autoStaticArp=False, waitConnected=False,
            )
            self._build(launchers)
        except BaseException:
            self.stop()
            raise

    def _build(self, launchers: dict[str, GatewayLauncher]) -> None:
        assert self.run is not None
        net = self._net
        prefix = self.run.prefix
        fabric = net.addHost(f"{prefix}-fabric", ip=None)
        self.run.record(fabric.pid, "fabric: namespace shell")
        self._fabric = fabric
        # No IPv6 and no br_netfilter on the bridges: they are wires, not hosts.
        _cmd_checked(fabric, [
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
            "sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
            "sysctl -qw net.ipv4.igmp_link_local_mcast_reports=0",
            "{ sysctl -qw net.bridge.bridge-nf-call-iptables=0 "
            "net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 "
            "2>/dev/null || true; }",
        ] + [
            f"ip link add name {seg} type bridge stp_state 0 forward_delay 0 "
            "nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0"
            for seg in self.topology.segments
        ])
        for node in self.topology.nodes.values():
            host = net.addHost(f"{prefix}-{node.name}", ip=None)
            self.run.record(host.pid, f"{node.name}: namespace shell")
            self.nodes[node.name] = LabNode(
                node, host, self.run, self.gateway_spec(node.name), launchers.get(node.name)
            )
        ports: list[str] = []
        enslave = []
        for node in self.topology.nodes.values():
            for intf in node.interfaces:
                port = f"{node.name}-{intf.name}"
                if len(port) > 15 or port in ports:
                    port = f"port{len(ports)}"
                ports.append(port)
                net.addLink(self.nodes[node.name].mn, fabric, intfName1=intf.name, intfName2=port)
                enslave.append(f"ip link set {port} master {intf.segment} up")
        enslave += [f"ip link set {seg} up" for seg in self.topology.segments]
        _cmd_checked(fabric, enslave)
        for lab_node in self.nodes.values():
            _configure(lab_node)

    def node(self, name: str) -> LabNode:
        self.topology.node(name)
        return self.nodes[name]

    # gateways

    def start_gateway(self, name: str) -> None:
        node = self.node(name)
        if node.launcher is None or node.gateway is None:
            raise IpsecLabError(f"{name} is not a gateway")
        assert self.workdir is not None
        gw_dir = self.workdir / name
        gw_dir.mkdir(exist_ok=True)
        node.handle = node.launcher.start(node, node.gateway, gw_dir)
        node.started = True

    def stop_gateway(self, name: str) -> None:
        node = self.node(name)
        if node.launcher is not None and node.started:
            node.launcher.stop()
            node.handle = None
            node.started = False

    def start_gateways(self) -> None:
        """Start every gateway program: those that may start together at once, then the rest.

        A program whose launcher allows it (:meth:`GatewayLauncher.parallel`, e.g. manual SAs
        only) is spawned in every such node first and waited for afterwards, so bringing up N
        of them takes about as long as the slowest, not N times one. The others (IKE daemons
        that initiate at once) follow one by one, in node order. If one fails, those already
        spawned are stopped again before the error goes on.
        """
        assert self.workdir is not None
        todo = [(n, node) for n, node in self.nodes.items()
                if node.launcher is not None and node.gateway is not None and not node.started]
        together = [(n, node) for n, node in todo
                    if node.launcher.parallel(node.gateway)]  # type: ignore[union-attr,arg-type]
        self._start_together(together)
        for name, node in todo:
            if not node.started:
                self.start_gateway(name)

    def _start_together(self, nodes: list[tuple[str, LabNode]]) -> None:
        assert self.workdir is not None
        spawned: list[LabNode] = []
        try:
            for name, node in nodes:
                assert node.launcher is not None and node.gateway is not None
                gw_dir = self.workdir / name
                gw_dir.mkdir(exist_ok=True)
                node.launcher.spawn(node, node.gateway, gw_dir)
                spawned.append(node)
            for node in spawned:
                assert node.launcher is not None
                node.handle = node.launcher.wait_ready()
                node.started = True
        except BaseException:
            with signals_deferred():
                for node in spawned:
                    with contextlib.suppress(Exception):
                        node.launcher.stop()  # type: ignore[union-attr]
                    node.handle = None
                    node.started = False
            raise

    # captures

    def capture_target(self, target: str) -> tuple[Any, str]:
        """``segment`` (its bridge, which sees every frame on it) or ``node:interface``.

        Returns the Mininet host to run tcpdump in and the interface name there.
        """
        if ":" in target:
            node_name, ifname = target.split(":", 1)
            node = self.node(node_name)
            try:
                node.spec.interface(ifname)
            except KeyError:
                raise ConfigError(f"node {node_name} has no interface {ifname}") from None
            return node.mn, ifname
        if target not in self.topology.segments:
            raise ConfigError(
                f"no segment '{target}' to capture{nearest(target, self.topology.segments)}"
            )
        return self._fabric, target

    def start_capture(self, target: str, path: Path | None = None) -> Capture:
        """Start tcpdump on a segment or ``node:interface``; returns once it is listening."""
        assert self.run is not None and self.workdir is not None
        host, iface = self.capture_target(target)
        path = path or self.workdir / f"{target.replace(':', '-')}.pcap"
        run = self.run

        def popen(args: list[str]) -> subprocess.Popen[bytes]:
            proc: subprocess.Popen[bytes] = host.popen(args, stdout=subprocess.DEVNULL)
            run.record(proc.pid, f"tcpdump {target}")
            return proc

        capture = Capture(target, iface, path, popen)
        self._captures.append(capture)
        return capture

    def stop_capture(self, capture: Capture) -> Path:
        path = capture.stop()
        if capture in self._captures:
            self._captures.remove(capture)
        return path

    # tear-down

    def stop(self) -> list[str]:
        """Stop captures, gateway programs, every recorded process, and delete our links."""
        removed: list[str] = []
        with signals_deferred():
            atexit.unregister(self.stop)
            for capture in list(self._captures):
                with contextlib.suppress(Exception):
                    self.stop_capture(capture)
            for node in self.nodes.values():
                if node.launcher is not None and node.started:
                    node.started = False
                    node.handle = None
                    with contextlib.suppress(Exception):
                        node.launcher.stop()
            if self._net is not None:
                # Kill first so that Mininet's own stop only has to close files.
                if self.run is not None:
                    removed += kill_recorded(self.run.processes())
                for host in self._net.hosts:
                    with contextlib.suppress(Exception):
                        host.cleanup()
                self._net = None
            if self.run is not None:
                removed += self.run.teardown()
                self.run = None
            if self._own_workdir and self.workdir is not None:
                # A directory we made ourselves goes too, unless it holds captures or logs
                # the caller may still want to read.
                with contextlib.suppress(OSError):
                    self.workdir.rmdir()
        return removed


def _configure(node: LabNode) -> None:
    """Addresses, routes, forwarding and NAT inside one node's namespace."""
    spec = node.spec
    lines = ["ip link set lo up"]
    forwarding = "1" if spec.forwards else "0"
    # No IGMP reports for link-local groups either: nothing in the lab routes multicast.
    lines += ["sysctl -qw net.ipv4.igmp_link_local_mcast_reports=0",
              f"sysctl -qw net.ipv4.ip_forward={forwarding}",
              f"sysctl -qw net.ipv6.conf.all.forwarding={forwarding}"]
    if spec.forwards:
        # A hub forwarding out of the interface it received on would send ICMP redirects,
        # noise in every capture; the topology's routes are meant as they are written.
        lines += ["sysctl -qw net.ipv4.conf.all.send_redirects=0",
                  "sysctl -qw net.ipv4.conf.default.send_redirects=0"]
    for intf in spec.interfaces:
        if not any(addr.version == 6 for addr in intf.addresses):
            # No IPv6 in the topology here: no link-local address, router solicitations or
            # MLD reports either, which would be the first frames of every capture.
            lines.append(f"sysctl -qw net/ipv6/conf/{intf.name}/disable_ipv6=1")
        for addr in intf.addresses:
            extra = " nodad" if addr.version == 6 else ""
            lines.append(f"ip addr add {addr} dev {intf.name}{extra}")
        lines.append(f"ip link set {intf.name} up")
    for route in spec.routes:
        family = "-6" if route.via.version == 6 else "-4"
        lines.append(f"ip {family} route replace {route.destination} via {route.via}")
    if spec.nat_outside:
        lines.append(f"iptables -t nat -A POSTROUTING -o {spec.nat_outside} -j MASQUERADE")
    _cmd_checked(node.mn, lines)


def _cmd_checked(host: Any, commands: list[str]) -> None:
    """Run commands in a node's shell, a few per line: a terminal line holds at most 4095 bytes."""
    batch: list[str] = []
    for command in [*commands, ""]:
        if command and sum(len(c) + 4 for c in batch) + len(command) < 1500:
            batch.append(command)
            continue
        if batch:
            line = " && ".join(batch)
            out = str(host.cmd(line + "; echo __rc=$?"))
            body, _, rc = out.rpartition("__rc=")
            if rc.strip() != "0":
                raise IpsecLabError(f"setting up the lab failed: {line}: {body.strip()}")
        batch = [command]


def _raise_nofile() -> None:
    """Each node holds a pty and pipes; 32 spokes need more descriptors than the default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
