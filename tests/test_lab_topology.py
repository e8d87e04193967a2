"""Topology and scenario files: every mistake is a ConfigError with file and line (no root)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ipseclab.errors import ConfigError
from ipseclab.lab.capture import classify
from ipseclab.lab.scenario import load_scenario
from ipseclab.lab.topology import TOPOLOGY_DIR, hub_and_spoke, load_topology, parse_topology
from ipseclab.lab.yamlnodes import Source

NAMES = ["host-to-host", "site-to-site", "hub-and-spoke", "on-path-attacker", "nat-road-warrior"]

GOOD = """\
name: t
segments:
  lan1: {}
  wan: {}
nodes:
  h1:
    role: host
    interfaces:
      eth0: {segment: lan1, address: 10.1.0.10/24}
    routes:
      - {to: default, via: 10.1.0.1}
  gw1:
    role: gateway
    interfaces:
      eth0: {segment: lan1, address: 10.1.0.1/24}
      eth1: {segment: wan, address: 192.0.2.1/24}
"""


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_topology(write(tmp_path, text))
    return info.value


@pytest.mark.parametrize("name", NAMES)
def test_shipped_topologies_load(name: str) -> None:
    topo = load_topology(name)
    assert topo.name == name
    assert all(n.interfaces for n in topo.nodes.values())


def test_shipped_scenarios_load() -> None:
    paths = sorted((TOPOLOGY_DIR / "scenarios").glob("*.yaml"))
    assert set(NAMES) <= {p.stem for p in paths}  # one per topology, variants beside them
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.checks and scenario.captures


def test_hub_and_spoke_file_is_the_generator_with_three_spokes() -> None:
    from_file, generated = load_topology("hub-and-spoke"), hub_and_spoke(3)
    assert from_file.nodes == generated.nodes
    assert from_file.segments == generated.segments


def test_hub_and_spoke_32() -> None:
    topo = load_topology("hub-and-spoke-32")
    assert len(topo.nodes) == 66 and len(topo.segments) == 34
    assert str(topo.node("spoke32").interface("eth1").addresses[0]) == "192.0.2.42/24"


def test_good_file_loads(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    assert topo.node("gw1").forwards and not topo.node("h1").forwards
    assert topo.node("gw1").gateway is not None and topo.node("gw1").gateway.impl == "none"
    assert [n.name for n, _ in topo.on_segment("lan1")] == ["h1", "gw1"]


def test_bad_address_names_line_and_expected_form(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("10.1.0.10/24", "10.1.0.300/24"))
    assert err.line == 9 and err.file.endswith("t.yaml")
    assert "expected an IPv4 prefix like 10.1.0.1/24" in str(err)
    assert err.token == "10.1.0.300/24"


def test_address_without_prefix(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("10.1.0.10/24", "10.1.0.10"))
    assert err.line == 9 and "prefix" in err.message


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("    routes:", "    rotues:"))
    assert err.line == 10
    assert "unknown key 'rotues'" in err.message and "did you mean 'routes'" in err.message


def test_unknown_role_suggests_nearest(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("role: gateway", "role: gatway"))
    assert err.line == 13 and "did you mean 'gateway'" in err.message


def test_undefined_segment(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("eth1: {segment: wan,", "eth1: {segment: wna,"))
    assert err.line == 16 and "'wna'" in err.message and "did you mean 'wan'" in err.message


def test_duplicate_address(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("10.1.0.1/24}", "10.1.0.10/24}"))
    assert err.line == 15 and "duplicate address 10.1.0.10" in err.message
    assert "h1:eth0" in err.message


def test_address_outside_allowed_ranges(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("192.0.2.1/24", "8.8.8.1/24"))
    assert err.line == 16 and "outside the allowed ranges" in err.message


def test_network_address_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("192.0.2.1/24", "192.0.2.0/24"))
    assert err.line == 16 and "network or broadcast" in err.message


def test_segment_subnet_mismatch(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("10.1.0.1/24", "10.3.0.1/24"))
    assert err.line == 15 and "10.1.0.0/24" in err.message


def test_route_via_unreachable_next_hop(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("via: 10.1.0.1", "via: 10.7.0.1"))
    assert err.line == 11 and "not on any subnet of h1" in err.message


def test_duplicate_node(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD + "  h1:\n    role: host\n    interfaces: {}\n")
    assert err.line == 17 and "duplicate key 'h1'" in err.message


def test_unused_segment(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("  wan: {}\n", "  wan: {}\n  dmz: {}\n"))
    assert err.line == 5 and "'dmz' has no interface" in err.message


def test_gateway_impl_unknown_and_missing_config(tmp_path: Path) -> None:
    text = GOOD + "    gateway: {impl: strongswann}\n"
    err = error_of(tmp_path, text)
    assert err.line == 17 and "did you mean 'strongswan'" in err.message
    text = GOOD + "    gateway: {impl: ipseclab, config: nowhere.conf}\n"
    err = error_of(tmp_path, text)
    assert err.line == 17 and "not found" in err.message


def test_nat_needs_outside_interface(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("role: gateway", "role: nat"))
    assert err.line == 13 and "nat: {outside: IFACE}" in err.message


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("eth0: {segment: lan1, address: 10.1.0.10/24}",
                                          "eth0: {segment: lan1, address: 10.1.0.10/24"))
    assert err.line is not None and err.line >= 9 and "not valid YAML" in err.message


def test_one_line_message() -> None:
    err = ConfigError("x", file="a.yaml", line=3)
    assert str(err) == "a.yaml:3: x"


SCENARIO = """\
topology: {topo}
capture: [wan]
steps:
  - start
  - ping: {{from: h1, to: gw1, count: 2, pattern: hello}}
checks:
  - wan_only_ipsec: wan
  - no_plaintext: {{link: wan, pattern: hello}}
"""


def scenario_error(tmp_path: Path, text: str) -> ConfigError:
    write(tmp_path, GOOD)
    path = write(tmp_path, text.format(topo="t.yaml"), "s.yaml")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert info.value.file is not None and info.value.file.endswith("s.yaml")
    return info.value


def test_scenario_loads(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    s = load_scenario(write(tmp_path, SCENARIO.format(topo="t.yaml"), "s.yaml"), impl="strongswan")
    assert [st.kind for st in s.steps] == ["start", "ping"]
    assert s.gateway("gw1").impl == "strongswan"


def test_scenario_unknown_node(tmp_path: Path) -> None:
    err = scenario_error(tmp_path, SCENARIO.replace("to: gw1", "to: gw9"))
    assert err.line == 5 and "did you mean 'gw1'" in err.message


def test_scenario_unknown_step(tmp_path: Path) -> None:
    err = scenario_error(tmp_path, SCENARIO.replace("  - start", "  - strat"))
    assert err.line == 4 and "did you mean 'start'" in err.message


def test_scenario_check_on_uncaptured_link(tmp_path: Path) -> None:
    err = scenario_error(tmp_path, SCENARIO.replace("wan_only_ipsec: wan", "wan_only_ipsec: lan1"))
    assert err.line == 7 and "not captured" in err.message


def test_scenario_capture_unknown_interface(tmp_path: Path) -> None:
    err = scenario_error(tmp_path, SCENARIO.replace("capture: [wan]", "capture: [wan, gw1:eth7]"))
    assert err.line == 2 and "no interface 'eth7'" in err.message


def test_scenario_ping_pattern_too_long(tmp_path: Path) -> None:
    err = scenario_error(tmp_path, SCENARIO.replace("pattern: hello}}\n", "pattern: " + "x" * 17
                                                    + "}}\n", 1))
    assert err.line == 5 and "16" in err.message


def test_scenario_lossless_ping_and_ike_sas(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    text = SCENARIO.replace("pattern: hello}}", "pattern: hello, lossless: true}}", 1).replace(
        "  - wan_only_ipsec: wan", "  - wan_only_ipsec: wan\n  - ike_sas: {{link: wan, min: 2}}")
    s = load_scenario(write(tmp_path, text.format(topo="t.yaml"), "s.yaml"))
    assert s.steps[1].args["lossless"] and s.steps[1].describe().endswith(", none lost")
    (ike,) = [c for c in s.checks if c.kind == "ike_sas"]
    assert ike.args == {"link": "wan", "min": 2} and ike.name == "ike_sas wan >= 2"
    err = scenario_error(tmp_path, text.replace("lossless: true", "lossless: maybe"))
    assert err.line == 5 and "lossless" in err.message
    err = scenario_error(tmp_path, text.replace("min: 2", "min: 0"))
    assert err.line == 8 and "min" in err.message


def test_scenario_no_weak_ike_check(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    text = SCENARIO.replace("  - wan_only_ipsec: wan",
                            "  - wan_only_ipsec: wan\n  - no_weak_ike: {{from: gw1, to: h1}}")
    s = load_scenario(write(tmp_path, text.format(topo="t.yaml"), "s.yaml"))
    (probe,) = [c for c in s.checks if c.kind == "no_weak_ike"]
    assert probe.args == {"from": "gw1", "to": "h1"} and probe.name == "no_weak_ike gw1 -> h1"
    err = scenario_error(tmp_path, text.replace("to: h1}}", "to: gw7}}"))
    assert err.line == 8 and "no node 'gw7'" in err.message
    err = scenario_error(tmp_path, text.replace("from: gw1, to: h1", "from: gw1"))
    assert err.line == 8 and "to" in err.message


def test_scenario_traffic_from_and_to_a_nodes_address(tmp_path: Path) -> None:
    """A ping or iperf3 end may be an address of a node (its source address, then): how
    site-to-site-algorithms sends from each of h1's addresses through its own child SA."""
    write(tmp_path, GOOD)
    topo = parse_topology(Source(tmp_path / "t.yaml"))
    h1 = str(topo.nodes["h1"].primary_address.ip)
    gw1 = str(topo.nodes["gw1"].primary_address.ip)
    assert topo.owner(h1) == "h1" and topo.owner("gw1:eth0") == "gw1" and topo.owner("h1") == "h1"
    text = SCENARIO.replace("from: h1, to: gw1", f"from: {h1}, to: {gw1}")
    s = load_scenario(write(tmp_path, text.format(topo="t.yaml"), "s.yaml"))
    assert (s.steps[1].args["from"], s.steps[1].args["to"]) == (h1, gw1)
    err = scenario_error(tmp_path, SCENARIO.replace("to: gw1", "to: 10.99.0.1"))
    assert err.line == 5 and "no node" in err.message and "10.99.0.1" in err.message


def eth(ethertype: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + ethertype.to_bytes(2, "big") + payload


def ipv4(proto: int, l4: bytes) -> bytes:
    return bytes([0x45, 0, 0, 20 + len(l4), 0, 0, 0, 0, 64, proto, 0, 0, 192, 0, 2, 1,
                  192, 0, 2, 2]) + l4


def test_classify_frames() -> None:
    esp = classify(eth(0x0800, ipv4(50, b"\x00" * 16)))
    assert esp.is_ipsec and esp.describe() == "ESP 192.0.2.1 > 192.0.2.2"
    nat_t = classify(eth(0x0800, ipv4(17, (4500).to_bytes(2, "big") * 2 + b"\x00" * 4)))
    assert nat_t.is_ipsec and nat_t.dport == 4500
    icmp = classify(eth(0x0800, ipv4(1, b"\x08\x00\x00\x00")))
    assert not icmp.is_ipsec and not icmp.link_control
    assert classify(eth(0x0806, b"\x00" * 28)).link_control
    assert classify(b"\x00" * 5).kind == "other"


def test_unregistered_impl_fails_before_anything_starts(tmp_path: Path, monkeypatch) -> None:
    from ipseclab.lab import launchers, network
    from ipseclab.lab.network import Network, launcher_for, register_launcher

    # As on a machine where the ipseclab launcher could not be registered.
    monkeypatch.setattr(launchers, "LAUNCHER_MODULES", ())
    monkeypatch.setattr(network, "_LAUNCHERS", {"none": network.NoopLauncher})

    write(tmp_path, GOOD)
    scenario = load_scenario(write(tmp_path, SCENARIO.format(topo="t.yaml"), "s.yaml"),
                             impl="ipseclab")
    net = Network(scenario.topology, gateways=scenario.gateways)
    with pytest.raises(ConfigError, match="impl ipseclab not available yet"):
        net.start()
    assert net.run is None and not net.nodes
    register_launcher("test-impl", lambda: launcher_for("none"))
    assert launcher_for("test-impl") is not None
