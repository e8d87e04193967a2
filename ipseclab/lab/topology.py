"""Topology files: which nodes exist, which segment each interface sits on, addresses and routes.

A topology is loaded and checked completely before anything starts: every mistake is a
:class:`~ipseclab.errors.ConfigError` naming the file and line. The YAML format is described in
``topologies/README.md``. Addresses are restricted to 10.0.0.0/8 for site LANs and the
documentation ranges of RFC 5737 (and RFC 3849 / RFC 4193 for IPv6) for WAN links, so nothing
the lab builds can be mistaken for, or routed to, a real network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ipseclab.errors import ConfigError
from ipseclab.lab import yamlnodes as yn

TOPOLOGY_DIR = Path(__file__).resolve().parents[2] / "topologies"

ROLES = ("host", "gateway", "router", "nat")
IMPLS = ("ipseclab", "strongswan", "none")
FORWARDING_ROLES = ("gateway", "router", "nat")

ALLOWED_NETWORKS = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("2001:db8::/32"),
    ipaddress.ip_network("fd00::/8"),
)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Segment:
    """One broadcast domain: a Linux bridge that every interface on it plugs into."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class Interface:
    name: str
    segment: str
    addresses: tuple[Address, ...]


@dataclass(frozen=True)
class Route:
    """``to`` is a prefix or None for the default route."""

    to: Network | None
    via: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def destination(self) -> str:
        if self.to is None:
            return "default"
        return str(self.to)


@dataclass(frozen=True)
class GatewaySpec:
    """Which program protects this node's traffic, and its configuration files."""

    impl: str
    config: tuple[Path, ...] = ()
    options: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    gateway: GatewaySpec | None = None
    nat_outside: str | None = None
    description: str = ""

    @property
    def forwards(self) -> bool:
        return self.role in FORWARDING_ROLES

    def interface(self, name: str) -> Interface:
        for intf in self.interfaces:
            if intf.name == name:
                return intf
        raise KeyError(name)

    @property
    def primary_address(self) -> Address:
        """The first address of the first interface: what ``ping h2`` means."""
        for intf in self.interfaces:
            if intf.addresses:
                return intf.addresses[0]
        raise ConfigError(f"node {self.name} has no address")


@dataclass(frozen=True)
class Topology:
    name: str
    segments: dict[str, Segment]
    nodes: dict[str, Node]
    description: str = ""
    path: Path | None = None

    def owner(self, target: str) -> str:
        """The node a traffic target names: ``h2``, ``h2:eth0``, or one of h2's addresses
        (a node with several addresses, e.g. one per child SA, is reached at each)."""
        try:
            ip = ipaddress.ip_address(target)
        except ValueError:
            return target.partition(":")[0]
        for node in self.nodes.values():
            if any(a.ip == ip for intf in node.interfaces for a in intf.addresses):
                return node.name
        raise ConfigError(f"no node of topology {self.name} has the address {target}",
                          token=target)

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(
                f"no node '{name}' in topology {self.name}{yn.nearest(name, self.nodes)}"
            ) from None

    def on_segment(self, segment: str) -> list[tuple[Node, Interface]]:
        return [(n, i) for n in self.nodes.values() for i in n.interfaces if i.segment == segment]

    @property
    def gateways(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.gateway is not None]


# --- loading -------------------------------------------------------------------------------


def find_topology(name: str | Path) -> Path:
    """A topology by path, or by name in the project's ``topologies/`` folder."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = TOPOLOGY_DIR / f"{name}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml"))
    raise ConfigError(f"no topology named '{name}'{yn.nearest(str(name), known)}")


def load_topology(name: str | Path) -> Topology:
    """Load a topology file (or ``hub-and-spoke-N`` for the generated hub and N spokes)."""
    match = re.fullmatch(r"hub-and-spoke-(\d+)", str(name))
    if match:
        return hub_and_spoke(int(match.group(1)))
    path = find_topology(name)
    return parse_topology(yn.Source(path))


def parse_topology(src: yn.Source) -> Topology:
    root = src.compose()
    top = yn.fields(
        src, root, "the topology", ("name", "description", "segments", "nodes"), ("nodes",)
    )
    name = yn.text(src, top["name"][1], "name") if "name" in top else src.path.stem
    description = yn.text(src, top["description"][1], "description") if "description" in top else ""

    segments: dict[str, Segment] = {}
    seg_lines: dict[str, yaml.Node] = {}
    if "segments" in top:
        for key, value in yn.mapping(src, top["segments"][1], "segments"):
            _check_name(src, key, "segment")
            desc = ""
            if not yn.is_null(value):
                if isinstance(value, yaml.ScalarNode):
                    desc = value.value
                else:
                    f = yn.fields(src, value, f"segment {key.value}", ("description",))
                    if "description" in f:
                        desc = yn.text(src, f["description"][1], "description")
            segments[key.value] = Segment(key.value, desc)
            seg_lines[key.value] = key

    nodes: dict[str, Node] = {}
    node_keys: dict[str, yaml.Node] = {}
    for key, value in yn.mapping(src, top["nodes"][1], "nodes"):
        _check_name(src, key, "node")
        nodes[key.value] = _parse_node(src, key.value, value, segments)
        node_keys[key.value] = key
    if not nodes:
        raise src.error(top["nodes"][1], "the topology has no nodes")

    _check_addresses(src, root, nodes)
    for seg, key in seg_lines.items():
        if not any(i.segment == seg for n in nodes.values() for i in n.interfaces):
            raise src.error(key, f"segment '{seg}' has no interface on it")
    return Topology(name, segments, nodes, description, src.path)


def _check_name(src: yn.Source, key: yaml.ScalarNode, what: str) -> None:
    if not _NAME.match(key.value):
        raise src.error(
            key,
            f"expected a {what} name of letters, digits, '-' or '_', starting with a letter, "
            "at most 15 characters",
            key.value,
        )


_NODE_KEYS = ("role", "description", "interfaces", "routes", "gateway", "nat")


def _parse_node(src: yn.Source, name: str, node: yaml.Node, segments: dict[str, Segment]) -> Node:
    what = f"node {name}"
    f = yn.fields(src, node, what, _NODE_KEYS, ("role", "interfaces"))
    role_node = f["role"][1]
    role = yn.text(src, role_node, "role")
    if role not in ROLES:
        raise src.error(role_node, f"unknown role '{role}'{yn.nearest(role, ROLES)}", role)
    description = yn.text(src, f["description"][1], "description") if "description" in f else ""

    interfaces = []
    for ikey, ivalue in yn.mapping(src, f["interfaces"][1], f"interfaces of {name}"):
        if not _IFNAME.match(ikey.value) or ikey.value == "lo":
            raise src.error(
                ikey, "expected an interface name like eth0 (at most 15 characters)", ikey.value
            )
        interfaces.append(_parse_interface(src, name, ikey.value, ivalue, segments))
    if not interfaces:
        raise src.error(f["interfaces"][1], f"node {name} has no interfaces")

    routes = []
    if "routes" in f:
        for item in yn.sequence(src, f["routes"][1], f"routes of {name}"):
            routes.append(_parse_route(src, name, item, interfaces))

    gateway = None
    if "gateway" in f:
        gkey = f["gateway"][0]
        if role not in ("gateway", "host"):
            raise src.error(gkey, f"a gateway block belongs on a gateway or host, not a {role}")
        gateway = parse_gateway(src, f["gateway"][1], f"gateway of {name}")
    elif role == "gateway":
        gateway = GatewaySpec("none")

    nat_outside = None
    if role == "nat":
        if "nat" not in f:
            raise src.error(node, f"node {name} has role nat and needs 'nat: {{outside: IFACE}}'")
        nf = yn.fields(src, f["nat"][1], f"nat of {name}", ("outside",), ("outside",))
        onode = nf["outside"][1]
        nat_outside = yn.text(src, onode, "outside")
        known = [i.name for i in interfaces]
        if nat_outside not in known:
            raise src.error(
                onode,
                f"node {name} has no interface '{nat_outside}'{yn.nearest(nat_outside, known)}",
            )
    elif "nat" in f:
        raise src.error(f["nat"][0], f"a nat block belongs on a node with role nat, not a {role}")

    return Node(name, role, tuple(interfaces), tuple(routes), gateway, nat_outside, description)


def _parse_interface(
    src: yn.Source, node: str, ifname: str, value: yaml.Node, segments: dict[str, Segment]
) -> Interface:
    what = f"interface {node}:{ifname}"
    f = yn.fields(src, value, what, ("segment", "address"), ("segment",))
    snode = f["segment"][1]
    segment = yn.text(src, snode, "segment")
    if segment not in segments:
        raise src.error(
            snode,
            f"{what} is on segment '{segment}', which is not defined under segments"
            f"{yn.nearest(segment, segments) if segments else ''}",
            segment,
        )
    addresses = []
    if "address" in f:
        for anode, raw in yn.strings(src, f["address"][1], "address"):
            addresses.append(parse_address(src, anode, raw))
    return Interface(ifname, segment, tuple(addresses))


def parse_address(src: yn.Source, node: yaml.Node, raw: str) -> Address:
    """An interface address with its prefix length, inside the ranges the lab allows."""
    if "/" not in raw:
        raise src.error(node, "expected an IPv4 prefix like 10.1.0.1/24", raw)
    try:
        addr = ipaddress.ip_interface(raw)
    except ValueError:
        raise src.error(node, "expected an IPv4 prefix like 10.1.0.1/24", raw) from None
    if not any(addr.network.subnet_of(n) for n in ALLOWED_NETWORKS if n.version == addr.version):
        allowed = ", ".join(str(n) for n in ALLOWED_NETWORKS)
        raise src.error(node, f"address outside the allowed ranges ({allowed})", raw)
    net = addr.network
    edges = (net.network_address, net.broadcast_address)
    if addr.version == 4 and net.prefixlen < 31 and addr.ip in edges:
        raise src.error(node, f"{addr.ip} is the network or broadcast address of {net}", raw)
    return addr


def _parse_route(
    src: yn.Source, node: str, item: yaml.Node, interfaces: list[Interface]
) -> Route:
    f = yn.fields(src, item, f"a route of {node}", ("to", "via"), ("to", "via"))
    to_node, via_node = f["to"][1], f["via"][1]
    to_raw = yn.text(src, to_node, "to")
    via_raw = yn.text(src, via_node, "via")
    to: Network | None = None
    if to_raw != "default":
        try:
            to = ipaddress.ip_network(to_raw)
        except ValueError:
            raise src.error(
                to_node, "expected 'default' or a prefix like 10.2.0.0/24", to_raw
            ) from None
    try:
        via = ipaddress.ip_address(via_raw)
    except ValueError:
        raise src.error(via_node, "expected a next-hop address like 10.1.0.1", via_raw) from None
    if not any(via in a.network for i in interfaces for a in i.addresses):
        raise src.error(via_node, f"next hop {via} is not on any subnet of {node}", via_raw)
    if to is not None and to.version != via.version:
        raise src.error(via_node, f"next hop {via} is not of the same IP version as {to}", via_raw)
    return Route(to, via)


def parse_gateway(src: yn.Source, value: yaml.Node, what: str) -> GatewaySpec:
    """``impl`` plus configuration file names, relative to the file that names them."""
    f = yn.fields(src, value, what, ("impl", "config", "options"), ("impl",))
    inode = f["impl"][1]
    impl = yn.text(src, inode, "impl")
    if impl not in IMPLS:
        raise src.error(inode, f"unknown impl '{impl}'{yn.nearest(impl, IMPLS)}", impl)
    configs = []
    if "config" in f:
        for cnode, raw in yn.strings(src, f["config"][1], "config"):
            path = (src.path.parent / raw).resolve()
            if impl != "none" and not path.is_file():
                raise src.error(cnode, f"configuration file not found: {path}", raw)
            configs.append(path)
    options: dict[str, Any] = {}
    if "options" in f:
        opts = yn.plain(f["options"][1])
        if not isinstance(opts, dict):
            raise src.error(f["options"][1], f"expected a mapping for options of {what}")
        options = opts
    return GatewaySpec(impl, tuple(configs), options)


def _check_addresses(src: yn.Source, root: yaml.Node, nodes: dict[str, Node]) -> None:
    """Duplicate addresses, and interfaces of one segment that disagree about its subnet."""
    lines = _address_lines(root)
    seen: dict[Any, str] = {}
    subnet_of_segment: dict[tuple[str, int], tuple[Network, str]] = {}
    for node in nodes.values():
        for intf in node.interfaces:
            where = f"{node.name}:{intf.name}"
            for addr in intf.addresses:
                line = lines.get((node.name, intf.name, str(addr)))
                if addr.ip in seen:
                    raise ConfigError(
                        f"duplicate address {addr.ip}: also on {seen[addr.ip]}",
                        file=src.file, line=line, token=str(addr),
                    )
                seen[addr.ip] = where
                key = (intf.segment, addr.version)
                if key in subnet_of_segment and subnet_of_segment[key][0] != addr.network:
                    net, other = subnet_of_segment[key]
                    raise ConfigError(
                        f"{where} has {addr} on segment {intf.segment}, "
                        f"but {other} puts {net} there",
                        file=src.file, line=line, token=str(addr),
                    )
                subnet_of_segment.setdefault(key, (addr.network, where))


def _address_lines(root: yaml.Node) -> dict[tuple[str, str, str], int]:
    """Line of each address, found again in the composed tree (it was validated already)."""
    out: dict[tuple[str, str, str], int] = {}
    nodes = next((v for k, v in root.value if k.value == "nodes"), None)
    for nkey, nval in nodes.value if nodes is not None else ():
        for k, v in nval.value:
            if k.value != "interfaces":
                continue
            for ikey, ival in v.value:
                for fk, fv in ival.value:
                    if fk.value != "address":
                        continue
                    items = fv.value if isinstance(fv, yaml.SequenceNode) else [fv]
                    for item in items:
                        text = str(ipaddress.ip_interface(item.value))
                        out[(nkey.value, ikey.value, text)] = item.start_mark.line + 1
    return out


# --- generated topologies ------------------------------------------------------------------


def hub_and_spoke(spokes: int) -> Topology:
    """A hub gateway and ``spokes`` spoke gateways on one WAN, each with a LAN and a host.

    The same shape as ``topologies/hub-and-spoke.yaml`` (which is ``hub_and_spoke(3)``), for the
    benchmarks with 2, 8 or 32 spokes. The hub's LAN is 10.0.0.0/24 and spoke i's is 10.i.0.0/24;
    spokes reach each other through the hub.
    """
    if not 1 <= spokes <= 200:
        raise ConfigError(f"hub-and-spoke needs between 1 and 200 spokes, not {spokes}")
    v4 = ipaddress.ip_interface
    segments = {"wan": Segment("wan", "the shared WAN, 192.0.2.0/24")}
    segments["lan0"] = Segment("lan0", "the hub's LAN, 10.0.0.0/24")
    nodes: dict[str, Node] = {}
    hub_routes = []
    for i in range(1, spokes + 1):
        segments[f"lan{i}"] = Segment(f"lan{i}", f"spoke{i}'s LAN, 10.{i}.0.0/24")
        hub_routes.append(
            Route(ipaddress.ip_network(f"10.{i}.0.0/24"), ipaddress.ip_address(f"192.0.2.{10 + i}"))
        )
    nodes["hub"] = Node(
        "hub", "gateway",
        (Interface("eth0", "lan0", (v4("10.0.0.1/24"),)),
         Interface("eth1", "wan", (v4("192.0.2.1/24"),))),
        tuple(hub_routes), GatewaySpec("none"),
    )
    nodes["h0"] = Node("h0", "host", (Interface("eth0", "lan0", (v4("10.0.0.10/24"),)),),
                       (Route(None, v4("10.0.0.1").ip),))
    for i in range(1, spokes + 1):
        nodes[f"spoke{i}"] = Node(
            f"spoke{i}", "gateway",
            (Interface("eth0", f"lan{i}", (v4(f"10.{i}.0.1/24"),)),
             Interface("eth1", "wan", (v4(f"192.0.2.{10 + i}/24"),))),
            (Route(ipaddress.ip_network("10.0.0.0/8"), v4("192.0.2.1").ip),),
            GatewaySpec("none"),
        )
        nodes[f"h{i}"] = Node(
            f"h{i}", "host", (Interface("eth0", f"lan{i}", (v4(f"10.{i}.0.10/24"),)),),
            (Route(None, v4(f"10.{i}.0.1").ip),),
        )
    return Topology(f"hub-and-spoke-{spokes}", segments, nodes,
                    f"a hub and {spokes} spokes, generated")
