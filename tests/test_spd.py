"""The SPD (RFC 4301 §4.4.1): ordered lookup, actions, templates, counters."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop

from ipseclab.errors import ConfigError
from ipseclab.ipsec.selectors import Direction, Selector, parse_fields
from ipseclab.ipsec.spd import SPD, Policy, PolicyAction, Template

ESP_TUNNEL = Template("esp", "tunnel", "192.0.2.1", "198.51.100.1", reqid=1)


def pkt(src: str, dst: str, l4: object = None) -> bytes:
    layer = TCP(sport=40000, dport=80) if l4 is None else l4
    return bytes(IP(src=src, dst=dst) / layer)


def site_to_site() -> tuple[SPD, Policy, Policy, Policy, Policy]:
    spd = SPD()
    protect = spd.add(Policy(Selector.parse("10.1.0.0/24", "10.2.0.0/24"), "out",
                             PolicyAction.PROTECT, priority=100, templates=[ESP_TUNNEL]))
    bypass_ssh = spd.add(Policy(Selector.parse("10.1.0.0/24", "10.2.0.0/24", "tcp", dport=22),
                                "out", PolicyAction.BYPASS, priority=50))
    discard = spd.add(Policy(Selector.parse("%any", "%any"), "out", PolicyAction.DISCARD,
                             priority=1000))
    inbound = spd.add(Policy(Selector.parse("10.1.0.0/24", "10.2.0.0/24"), "in",
                             PolicyAction.PROTECT, priority=100, templates=[ESP_TUNNEL]))
    return spd, protect, bypass_ssh, discard, inbound


def test_first_match_in_priority_order() -> None:
    spd, protect, bypass_ssh, discard, _ = site_to_site()
    web = parse_fields(pkt("10.1.0.5", "10.2.0.7"))
    ssh = parse_fields(pkt("10.1.0.5", "10.2.0.7", TCP(sport=40000, dport=22)))
    other = parse_fields(pkt("10.1.0.5", "203.0.113.9"))
    assert spd.lookup("out", web) is protect
    assert spd.lookup("out", ssh) is bypass_ssh  # priority 50 beats 100, though added later
    assert spd.lookup(Direction.OUT, other) is discard
    assert [p.packets for p in (protect, bypass_ssh, discard)] == [1, 1, 1]


def test_directions_are_separate_and_inbound_swaps_src() -> None:
    spd, protect, _, _, inbound = site_to_site()
    reply = parse_fields(pkt("10.2.0.7", "10.1.0.5", TCP(sport=80, dport=40000)))
    assert spd.lookup("in", reply) is inbound
    assert spd.lookup("fwd", reply) is None
    assert spd.lookup("out", reply).action is PolicyAction.DISCARD
    assert protect.packets == 0


def test_ties_in_insertion_order() -> None:
    spd = SPD()
    first = spd.add(Policy(Selector.parse("10.0.0.0/8", "%any"), "out", "bypass", priority=5))
    second = spd.add(Policy(Selector.parse("10.1.0.0/16", "%any"), "out", "discard", priority=5))
    earlier = spd.add(Policy(Selector.parse("10.1.2.0/24", "%any"), "out", "discard", priority=4))
    f = parse_fields(pkt("10.1.2.3", "192.0.2.1"))
    assert spd.lookup("out", f) is earlier
    spd.remove(earlier)
    assert spd.lookup("out", f) is first
    spd.remove(first.index)
    assert spd.lookup("out", f) is second
    assert [p.priority for p in spd.policies("out")] == [5]


def test_no_match_is_none() -> None:
    spd = SPD()
    assert spd.lookup("out", parse_fields(pkt("10.1.0.5", "10.2.0.7"))) is None
    spd.add(Policy(Selector.parse("2001:db8::/32", "%any"), "out", "discard"))
    assert spd.lookup("out", parse_fields(pkt("10.1.0.5", "10.2.0.7"))) is None


def test_ipv6_and_icmp_lookup() -> None:
    spd = SPD()
    v6 = spd.add(Policy(Selector.parse("2001:db8:1::/48", "2001:db8:2::/48", "udp", dport=53),
                        "out", PolicyAction.PROTECT,
                        templates=[Template("esp", "transport", reqid=7)]))
    ping = spd.add(Policy(Selector.parse("10.1.0.0/24", "10.2.0.0/24", icmp_type=8), "out",
                          "bypass"))
    raw6 = bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / IPv6ExtHdrHopByHop()
                 / UDP(sport=1000, dport=53))
    assert spd.lookup("out", parse_fields(raw6)) is v6
    assert spd.lookup("out", parse_fields(pkt("10.1.0.1", "10.2.0.1", ICMP(type=8)))) is ping
    assert spd.lookup("out", parse_fields(pkt("10.1.0.1", "10.2.0.1", ICMP(type=0)))) is None


def test_lookup_without_counting() -> None:
    spd, protect, *_ = site_to_site()
    spd.lookup("out", parse_fields(pkt("10.1.0.5", "10.2.0.7")), count=False)
    assert protect.packets == 0


def test_listing_remove_flush() -> None:
    spd, protect, bypass_ssh, discard, inbound = site_to_site()
    assert len(spd) == 4
    assert list(spd) == [bypass_ssh, protect, discard, inbound]
    assert spd.find(Selector.parse("10.1.0.0/24", "10.2.0.0/24"), "in") is inbound
    assert spd.find(Selector.parse("10.9.0.0/24", "10.2.0.0/24"), "in") is None
    text = str(spd)
    assert "10.1.0.0/24 === 10.2.0.0/24[tcp/22] dir out bypass priority 50" in text
    assert "tmpl esp tunnel 192.0.2.1 -> 198.51.100.1 reqid 1" in text
    spd.remove(discard)
    assert discard.index is None
    with pytest.raises(KeyError):
        spd.remove(discard)
    with pytest.raises(KeyError):
        spd.remove(999)
    spd.flush()
    assert len(spd) == 0
    assert str(spd) == "(empty SPD)"
    spd.add(protect)  # can be added again after removal
    assert len(spd) == 1


def test_duplicate_selector_refused() -> None:
    spd, *_ = site_to_site()
    with pytest.raises(ConfigError, match="exists already"):
        spd.add(Policy(Selector.parse("10.1.0.0/24", "10.2.0.0/24"), "out", "discard",
                       priority=1))
    spd.add(Policy(Selector.parse("10.1.0.0/24", "10.2.0.0/24"), "fwd", "discard"))


def test_policy_validation() -> None:
    sel = Selector.parse("10.1.0.0/24", "10.2.0.0/24")
    with pytest.raises(ConfigError):
        Policy(sel, "out", PolicyAction.PROTECT)  # no template
    with pytest.raises(ConfigError):
        Policy(sel, "out", PolicyAction.BYPASS, templates=[ESP_TUNNEL])
    with pytest.raises(ConfigError):
        Policy(sel, "sideways", PolicyAction.BYPASS)
    with pytest.raises(ConfigError):
        Policy(sel, "out", "allow")
    assert Policy(sel, "fwd", "DISCARD").action is PolicyAction.DISCARD


def test_template_validation() -> None:
    t = Template("ah", "transport")
    assert (t.src, t.dst, t.reqid) == (None, None, None)
    assert ESP_TUNNEL.src == ipaddress.ip_address("192.0.2.1")
    with pytest.raises(ConfigError):
        Template("esp", "tunnel")  # tunnel needs endpoints
    with pytest.raises(ConfigError):
        Template("gre", "transport")
    with pytest.raises(ConfigError):
        Template("esp", "beet")
    with pytest.raises(ConfigError):
        Template("esp", "tunnel", "192.0.2.1", "2001:db8::1")
    with pytest.raises(ConfigError):
        Template("esp", "tunnel", "192.0.2.1", "not-an-address")
    with pytest.raises(ConfigError):
        Template("esp", spi=0)
    assert str(Template("esp", spi=0x1234)) == "esp transport spi 0x00001234"


# -- the flow memory: always what the ordered search says -------------------------------------

_HOSTS = [f"10.{a}.0.{b}" for a in (1, 2) for b in (1, 2, 3)]
_NETS = ["10.1.0.0/24", "10.2.0.0/24", "10.1.0.2/32", "10.2.0.3/32", "10.0.0.0/8", "%any"]
_PROTOS = [(None, None), ("tcp", 80), ("udp", 53), ("tcp", None), ("icmp", None)]


def _ordered_search(spd: SPD, direction: str, fields) -> Policy | None:
    return next((p for p in spd.policies(direction) if p.selector.matches(fields, direction)),
                None)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_remembered_lookups_equal_the_ordered_search(data) -> None:
    """Random policies (more than the few from which lookups are remembered), random packets,
    and policies added and removed between lookups: every answer and every count is the one
    a fresh ordered search gives (RFC 4301 §4.4.1)."""
    spd, counts = SPD(), {}
    for step in range(data.draw(st.integers(40, 120))):
        if step % 3 == 0 or not spd.policies():
            proto, port = data.draw(st.sampled_from(_PROTOS))
            selector = Selector.parse(data.draw(st.sampled_from(_NETS)),
                                      data.draw(st.sampled_from(_NETS)), proto, dport=port)
            if spd.find(selector, "out") is None:
                action = data.draw(st.sampled_from(["bypass", "discard"]))
                spd.add(Policy(selector, "out", action,
                               priority=data.draw(st.integers(0, 5))))
        elif step % 7 == 1:
            gone = spd.remove(data.draw(st.sampled_from(spd.policies())))
            counts.pop(id(gone), None)  # its id may serve a later policy
        src, dst = data.draw(st.sampled_from(_HOSTS)), data.draw(st.sampled_from(_HOSTS))
        l4 = data.draw(st.sampled_from([TCP(sport=4000, dport=80), TCP(sport=4000, dport=22),
                                        UDP(sport=5000, dport=53), ICMP(type=8)]))
        fields = parse_fields(pkt(src, dst, l4))
        expected = _ordered_search(spd, "out", fields)
        assert spd.lookup("out", fields) is expected
        if expected is not None:
            counts[id(expected)] = counts.get(id(expected), 0) + 1
    for policy in spd.policies():
        assert policy.packets == counts.get(id(policy), 0)
