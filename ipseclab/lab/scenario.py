"""Scenario files: a topology, gateway settings, links to capture, steps to run, checks to judge.

Loading checks everything that can be checked without root (node names, capture targets,
check arguments, gateway implementations), so a typo fails in a second with file and line, not
after a minute of set-up. The format is described in ``topologies/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ipseclab.errors import ConfigError
from ipseclab.lab import yamlnodes as yn
from ipseclab.lab.topology import (
    GatewaySpec,
    Topology,
    load_topology,
    parse_gateway,
    parse_topology,
)

STEP_KINDS = ("start", "ping", "iperf3", "wait", "start_gateway", "stop_gateway",
              "restart_gateway")
CHECK_KINDS = ("reachable", "wan_only_ipsec", "no_plaintext", "sa_counters", "ike_sas",
               "no_weak_ike")
MAX_PING_PATTERN = 16  # ping -p fills the payload with at most 16 pattern bytes


@dataclass(frozen=True)
class Step:
    kind: str
    args: dict[str, Any]
    line: int

    def describe(self) -> str:
        a = self.args
        if self.kind == "ping":
            return (f"ping {a['from']} -> {a['to']} x{a['count']}"
                    + (", none lost" if a.get("lossless") else ""))
        if self.kind == "iperf3":
            return f"iperf3 {a['from']} -> {a['to']} {'UDP' if a['udp'] else 'TCP'} {a['seconds']}s"
        if self.kind == "wait":
            return f"wait {a['seconds']}s"
        if "node" in a:
            return f"{self.kind} {a['node']}"
        return self.kind


@dataclass(frozen=True)
class CheckSpec:
    kind: str
    args: dict[str, Any]
    line: int

    @property
    def name(self) -> str:
        a = self.args
        if self.kind == "reachable":
            return f"reachable {a['from']} -> {a['to']}"
        if self.kind == "wan_only_ipsec":
            return f"wan_only_ipsec {a['link']}"
        if self.kind == "no_plaintext":
            return f"no_plaintext {a['link']} '{a['pattern']}'"
        if self.kind == "ike_sas":
            return f"ike_sas {a['link']} >= {a['min']}"
        if self.kind == "no_weak_ike":
            return f"no_weak_ike {a['from']} -> {a['to']}"
        return self.kind + "".join(f" {v}" for v in a.values())


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    topology: Topology
    gateways: dict[str, GatewaySpec] = field(default_factory=dict)
    captures: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    checks: tuple[CheckSpec, ...] = ()
    description: str = ""

    def gateway(self, node: str) -> GatewaySpec | None:
        return self.gateways.get(node, self.topology.node(node).gateway)


_TOP = ("name", "description", "topology", "gateways", "capture", "steps", "checks")


def load_scenario(path: str | Path, impl: str | None = None) -> Scenario:
    """Load and check a scenario; ``impl`` replaces every gateway's implementation."""
    src = yn.Source(path)
    root = src.compose()
    top = yn.fields(src, root, "the scenario", _TOP, ("topology",))
    name = yn.text(src, top["name"][1], "name") if "name" in top else src.path.stem
    desc = yn.text(src, top["description"][1], "description") if "description" in top else ""

    tnode = top["topology"][1]
    traw = yn.text(src, tnode, "topology")
    tpath = src.path.parent / traw
    if traw.endswith((".yaml", ".yml")):
        if not tpath.is_file():
            raise src.error(tnode, f"topology file not found: {tpath}", traw)
        topology = parse_topology(yn.Source(tpath))
    else:
        try:
            topology = load_topology(traw)
        except Exception as exc:  # a ConfigError without our line: add it
            raise src.error(tnode, str(exc), traw) from None

    gateways: dict[str, GatewaySpec] = {}
    if "gateways" in top:
        for key, value in yn.mapping(src, top["gateways"][1], "gateways"):
            _node(src, key, key.value, topology)
            if topology.nodes[key.value].role not in ("gateway", "host"):
                raise src.error(key, f"{key.value} is a {topology.nodes[key.value].role}, "
                                "not a gateway or host")
            gateways[key.value] = parse_gateway(src, value, f"gateway {key.value}")
    if impl is not None:
        for g in topology.gateways:
            spec = gateways.get(g.name, g.gateway)
            assert spec is not None
            gateways[g.name] = GatewaySpec(impl, spec.config, spec.options)

    captures: list[str] = []
    if "capture" in top:
        for cnode, target in yn.strings(src, top["capture"][1], "capture"):
            _capture_target(src, cnode, target, topology)
            if target in captures:
                raise src.error(cnode, f"'{target}' is captured twice", target)
            captures.append(target)

    steps = []
    if "steps" in top:
        for item in yn.sequence(src, top["steps"][1], "steps"):
            steps.append(_parse_step(src, item, topology))
    checks = []
    if "checks" in top:
        for item in yn.sequence(src, top["checks"][1], "checks"):
            checks.append(_parse_check(src, item, topology, captures))
    return Scenario(name, src.path, topology, gateways, tuple(captures), tuple(steps),
                    tuple(checks), desc)


def _node(src: yn.Source, where: yaml.Node, name: str, topology: Topology) -> str:
    if name not in topology.nodes:
        raise src.error(
            where,
            f"no node '{name}' in topology {topology.name}{yn.nearest(name, topology.nodes)}",
            name,
        )
    return name


def _capture_target(src: yn.Source, where: yaml.Node, target: str, topology: Topology) -> None:
    if ":" in target:
        node, ifname = target.split(":", 1)
        _node(src, where, node, topology)
        known = [i.name for i in topology.nodes[node].interfaces]
        if ifname not in known:
            raise src.error(where, f"node {node} has no interface '{ifname}'"
                            f"{yn.nearest(ifname, known)}", target)
    elif target not in topology.segments:
        raise src.error(where, f"no segment '{target}' in topology {topology.name}"
                        f"{yn.nearest(target, topology.segments)}", target)


def _single(src: yn.Source, item: yaml.Node, what: str, kinds: tuple[str, ...]) -> tuple[
        str, yaml.Node | None, yaml.Node]:
    """A list item that is ``kind`` or ``{kind: args}``."""
    if isinstance(item, yaml.ScalarNode):
        kind, value = item.value, None
        key: yaml.Node = item
    else:
        pairs = yn.mapping(src, item, what)
        if len(pairs) != 1:
            raise src.error(item, f"expected one {what} per list item, like '- ping: {{...}}'")
        key, value = pairs[0]
        kind = key.value
        if value is not None and yn.is_null(value):
            value = None
    if kind not in kinds:
        raise src.error(key, f"unknown {what} '{kind}'{yn.nearest(kind, kinds)}", kind)
    return kind, value, key


def _parse_step(src: yn.Source, item: yaml.Node, topology: Topology) -> Step:
    kind, value, key = _single(src, item, "step", STEP_KINDS)
    line = key.start_mark.line + 1
    if kind == "start":
        if value is not None:
            raise src.error(value, "start takes no arguments")
        return Step(kind, {}, line)
    if value is None:
        raise src.error(key, f"step {kind} needs arguments")
    if kind == "wait":
        return Step(kind, {"seconds": yn.number(src, value, "wait")}, line)
    if kind.endswith("_gateway"):
        name = _node(src, value, yn.text(src, value, kind), topology)
        if topology.nodes[name].gateway is None:
            raise src.error(value, f"{name} has no gateway program to {kind.split('_')[0]}", name)
        return Step(kind, {"node": name}, line)
    if kind == "ping":
        f = yn.fields(src, value, "ping", ("from", "to", "count", "pattern", "interval",
                                           "lossless"), ("from", "to"))
        args: dict[str, Any] = _from_to(src, f, topology)
        args["count"] = yn.integer(src, f["count"][1], "count", 1) if "count" in f else 3
        args["interval"] = yn.number(src, f["interval"][1], "interval") if "interval" in f else 0.2
        args["lossless"] = (yn.boolean(src, f["lossless"][1], "lossless") if "lossless" in f
                            else False)
        args["pattern"] = None
        if "pattern" in f:
            pattern = yn.text(src, f["pattern"][1], "pattern")
            if not 0 < len(pattern.encode()) <= MAX_PING_PATTERN:
                raise src.error(f["pattern"][1], f"a ping pattern has 1 to {MAX_PING_PATTERN} "
                                "bytes", pattern)
            args["pattern"] = pattern
        return Step(kind, args, line)
    f = yn.fields(src, value, "iperf3", ("from", "to", "udp", "seconds", "bandwidth"),
                  ("from", "to"))
    args = _from_to(src, f, topology)
    args["udp"] = yn.boolean(src, f["udp"][1], "udp") if "udp" in f else False
    args["seconds"] = yn.number(src, f["seconds"][1], "seconds") if "seconds" in f else 2.0
    args["bandwidth"] = yn.text(src, f["bandwidth"][1], "bandwidth") if "bandwidth" in f else "10M"
    return Step(kind, args, line)


def _from_to(src: yn.Source, f: dict[str, tuple[yaml.ScalarNode, yaml.Node]],
             topology: Topology) -> dict[str, Any]:
    out = {}
    for k in ("from", "to"):
        raw = yn.text(src, f[k][1], k)
        try:
            owner = topology.owner(raw)
        except ConfigError as exc:
            raise src.error(f[k][1], exc.message, raw) from None
        _node(src, f[k][1], owner, topology)
        out[k] = raw
    return out


def _parse_check(src: yn.Source, item: yaml.Node, topology: Topology,
                 captures: list[str]) -> CheckSpec:
    kind, value, key = _single(src, item, "check", CHECK_KINDS)
    line = key.start_mark.line + 1
    if kind == "sa_counters":
        args = yn.plain(value) if value is not None else {}
        if not isinstance(args, dict):
            raise src.error(value, "expected a mapping for sa_counters, like {gateway: gw1}")
        return CheckSpec(kind, args, line)
    if value is None:
        raise src.error(key, f"check {kind} needs arguments")
    if kind in ("reachable", "no_weak_ike"):
        f = yn.fields(src, value, kind, ("from", "to"), ("from", "to"))
        return CheckSpec(kind, _from_to(src, f, topology), line)
    if kind == "wan_only_ipsec":
        if isinstance(value, yaml.ScalarNode):
            link_node = value
        else:
            link_node = yn.fields(src, value, kind, ("link",), ("link",))["link"][1]
        return CheckSpec(kind, {"link": _captured(src, link_node, captures)}, line)
    if kind == "ike_sas":
        f = yn.fields(src, value, kind, ("link", "min"), ("link", "min"))
        return CheckSpec(kind, {"link": _captured(src, f["link"][1], captures),
                                "min": yn.integer(src, f["min"][1], "min", 1)}, line)
    f = yn.fields(src, value, kind, ("link", "pattern"), ("link", "pattern"))
    link = _captured(src, f["link"][1], captures)
    return CheckSpec(kind, {"link": link, "pattern": yn.text(src, f["pattern"][1], "pattern")},
                     line)


def _captured(src: yn.Source, node: yaml.Node, captures: list[str]) -> str:
    link = yn.text(src, node, "link")
    if link not in captures:
        raise src.error(node, f"link '{link}' is not captured; add it under capture:", link)
    return link
