"""Packet fields and traffic selectors (RFC 4301 §4.4.1, RFC 7296 §3.13.1)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import GRE
from scapy.packet import Raw

from ipseclab.errors import ConfigError
from ipseclab.ipsec.selectors import (
    ANY_PORTS,
    OPAQUE_PORTS,
    IkeTs,
    MalformedPacket,
    PacketFields,
    Selector,
    SelectorError,
    TrafficSelector,
    intersect,
    narrow,
    parse_fields,
    parse_protocol,
)


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


# -- parse_fields --------------------------------------------------------------------------------


def test_ipv4_tcp() -> None:
    f = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / TCP(sport=1234, dport=80)))
    assert f == PacketFields(4, ip("10.1.0.5"), ip("10.2.0.7"), 6, 1234, 80)
    assert str(f.src_addr) == "10.1.0.5"
    assert str(f) == "10.1.0.5 -> 10.2.0.7 tcp 1234 -> 80"


def test_ipv4_udp_with_options_and_trailing_bytes() -> None:
    pkt = IP(src="10.1.0.5", dst="10.2.0.7", options=b"\x01\x01\x01\x00") / UDP(sport=5, dport=53)
    raw = bytes(pkt) + b"\x00" * 6  # Ethernet padding after the IP total length
    f = parse_fields(raw)
    assert (f.proto, f.sport, f.dport) == (17, 5, 53)


def test_ipv4_icmp() -> None:
    f = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / ICMP(type=8, code=0)))
    assert (f.proto, f.icmp_type, f.icmp_code, f.sport) == (1, 8, 0, None)


def test_ipv4_gre_has_no_ports() -> None:
    f = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / GRE() / Raw(b"x" * 10)))
    assert (f.proto, f.sport, f.dport, f.fragment) == (47, None, None, False)


def test_ipv4_fragments() -> None:
    pkt = IP(src="10.1.0.5", dst="10.2.0.7", id=7) / UDP(sport=5000, dport=53) / Raw(b"a" * 300)
    frags = fragment(pkt, fragsize=104)
    assert len(frags) > 2
    first = parse_fields(bytes(frags[0]))
    assert (first.sport, first.dport, first.fragment) == (5000, 53, False)
    for frag in frags[1:]:
        f = parse_fields(bytes(frag))
        assert f.fragment
        assert (f.proto, f.sport, f.dport) == (17, None, None)


def test_ipv6_extension_headers_are_skipped() -> None:
    pkt = (
        IPv6(src="2001:db8:1::5", dst="2001:db8:2::7")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(addresses=["2001:db8:9::1"])
        / IPv6ExtHdrFragment(offset=0, m=1, id=9)
        / IPv6ExtHdrDestOpt()
        / TCP(sport=4000, dport=443)
    )
    f = parse_fields(bytes(pkt))
    assert f.version == 6
    assert f.src == ip("2001:db8:1::5")
    assert (f.proto, f.sport, f.dport, f.fragment) == (6, 4000, 443, False)


def test_ipv6_non_first_fragment() -> None:
    pkt = (
        IPv6(src="2001:db8:1::5", dst="2001:db8:2::7")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrFragment(offset=10, m=0, id=9, nh=17)
        / Raw(b"z" * 40)
    )
    f = parse_fields(bytes(pkt))
    assert (f.proto, f.sport, f.fragment) == (17, None, True)


def test_ipv6_icmpv6() -> None:
    f = parse_fields(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest()))
    assert (f.proto, f.icmp_type, f.icmp_code) == (58, 128, 0)


def test_memoryview_and_bytearray_accepted() -> None:
    raw = bytes(IP(src="10.1.0.5", dst="10.2.0.7") / TCP(sport=1, dport=2))
    assert parse_fields(memoryview(raw)) == parse_fields(bytearray(raw)) == parse_fields(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x45",
        b"\x55" + b"\x00" * 40,  # version 5
        bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP())[:30],  # total length > packet
        b"\x44" + bytes(IP() / TCP())[1:],  # IHL 4
        bytes(IP(src="10.0.0.1", dst="10.0.0.2", len=30) / TCP()),  # TCP header cut short
        bytes(IPv6() / TCP())[:50],
        bytes(IPv6(plen=8) / IPv6ExtHdrRouting(addresses=["::1"]) / TCP()),
        bytes(IPv6(plen=4) / ICMPv6EchoRequest())[:42],
    ],
)
def test_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_fields(raw)


def test_malformed_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_fields(b"\x60")


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=120),
        st.binary(max_size=120).map(lambda b: b"\x45" + b),
        st.binary(max_size=120).map(lambda b: b"\x60" + b),
        st.tuples(st.sampled_from([0, 43, 44, 60, 6, 17, 58]), st.binary(min_size=40, max_size=120))
        .map(lambda t: b"\x60\x00\x00\x00" + (len(t[1]) - 36).to_bytes(2, "big") + bytes([t[0]])
             + t[1]),
    )
)
def test_random_bytes_give_fields_or_malformed(data: bytes) -> None:
    try:
        f = parse_fields(data)
    except MalformedPacket:
        return
    assert f.version in (4, 6)
    assert 0 <= f.proto <= 255
    assert (f.sport is None) == (f.dport is None)


@settings(max_examples=100, deadline=None)
@given(
    sport=st.integers(0, 65535),
    dport=st.integers(0, 65535),
    src=st.integers(0, 2**32 - 1),
    dst=st.integers(0, 2**32 - 1),
    udp=st.booleans(),
)
def test_scapy_round_trip(sport: int, dport: int, src: int, dst: int, udp: bool) -> None:
    l4 = UDP(sport=sport, dport=dport) if udp else TCP(sport=sport, dport=dport)
    pkt = IP(src=str(ipaddress.IPv4Address(src)), dst=str(ipaddress.IPv4Address(dst))) / l4
    assert parse_fields(bytes(pkt)) == PacketFields(4, src, dst, 17 if udp else 6, sport, dport)


# -- TrafficSelector ------------------------------------------------------------------------------


def test_ts_parse_forms() -> None:
    ts = TrafficSelector.parse("10.1.0.0/24[tcp/80]")
    assert (ts.version, ts.start, ts.end) == (4, ip("10.1.0.0"), ip("10.1.0.255"))
    assert (ts.proto, ts.port_start, ts.port_end) == (6, 80, 80)
    assert str(ts) == "10.1.0.0/24[tcp/80]"
    rng = TrafficSelector.parse("10.1.0.5-10.1.0.9[udp/1000-2000]")
    assert str(rng) == "10.1.0.5-10.1.0.9[udp/1000-2000]"
    assert str(TrafficSelector.parse("10.1.0.0-10.1.0.255")) == "10.1.0.0/24"
    assert str(TrafficSelector.parse("10.1.0.7")) == "10.1.0.7/32"
    assert TrafficSelector.parse("%any") == TrafficSelector.any(4)
    assert TrafficSelector.parse("%any6") == TrafficSelector.any(6)
    assert str(TrafficSelector.parse("2001:db8::/32[icmpv6/128]")) == "2001:db8::/32[icmpv6/128]"
    assert str(TrafficSelector.parse("10.0.0.0/8[icmp/3:4]")) == "10.0.0.0/8[icmp/3:4]"
    # strongSwan's reading: a type alone means code 0; 256 and up is the 16-bit value
    for text, ports in (("icmp/8", (0x0800, 0x0800)), ("icmp/3-5", (0x0300, 0x0500)),
                        ("icmp/2048-2303", (0x0800, 0x08FF)), ("icmp/3:0-3:255", (0x300, 0x3FF)),
                        ("icmp", (0, 0xFFFF))):
        ts = TrafficSelector.parse(f"10.0.0.0/8[{text}]")
        assert (ts.port_start, ts.port_end) == ports, text
    assert str(TrafficSelector.parse("10.0.0.0/8[udp/%opaque]")) == "10.0.0.0/8[udp/%opaque]"
    assert str(TrafficSelector.parse("10.0.0.0/8[47]")) == "10.0.0.0/8[gre]"
    # service names and strongSwan's spellings without '%', as charon's own output has them
    assert str(TrafficSelector.parse("10.2.0.0/24[tcp/http]")) == "10.2.0.0/24[tcp/80]"
    assert str(TrafficSelector.parse("10.2.0.0/24[udp/domain]")) == "10.2.0.0/24[udp/53]"
    assert TrafficSelector.parse("10.2.0.0/24[udp/opaque]").opaque


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 58]), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_icmp_port_text_reads_back(proto: int, a: int, b: int) -> None:
    """Every ICMP type/code range prints as text that parses to the same range."""
    lo, hi = min(a, b), max(a, b)
    if (lo, hi) == (0, 0xFFFF):
        return  # any: printed without a port
    ts = TrafficSelector(4, 0, 2**32 - 1, proto, lo, hi)
    again = TrafficSelector.parse(str(ts))
    assert (again.proto, again.port_start, again.port_end) == (proto, lo, hi), str(ts)


@pytest.mark.parametrize(
    "text",
    ["10.0.0.0/33", "nonsense", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "10.0.0.0/8[bogus]",
     "10.0.0.0/8[tcp/70000]", "10.0.0.0/8[tcp/90-80]", "10.0.0.0/8[gre/5]", "10.0.0.0/8]",
     "10.0.0.0/8[icmp/8:300]", "10.0.0.0/8[icmp/9-8]", "10.0.0.0/8[icmp/300:1]",
     "10.0.0.0/8[tcp/no-such-service]"],
)
def test_ts_parse_errors_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrafficSelector.parse(text)
    assert "\n" not in str(info.value)


def test_ts_constructor_checks() -> None:
    with pytest.raises(SelectorError):
        TrafficSelector(4, 5, 4)
    with pytest.raises(SelectorError):
        TrafficSelector(4, 0, 2**32)
    with pytest.raises(SelectorError):
        TrafficSelector(4, 0, 1, 0, 80, 80)  # ports without protocol
    assert TrafficSelector(4, 0, 1, 17, *OPAQUE_PORTS).opaque


def test_protocol_names() -> None:
    assert [parse_protocol(n) for n in ("icmp", "tcp", "udp", "icmpv6", "gre", "esp", "any")] == [
        1, 6, 17, 58, 47, 50, 0]
    assert parse_protocol("TCP") == 6
    assert parse_protocol(132) == 132
    with pytest.raises(SelectorError):
        parse_protocol(256)


def test_ts_ike_round_trip() -> None:
    ts = TrafficSelector.parse("2001:db8::1-2001:db8::ff[udp/500]")
    plain = ts.to_ike()
    assert plain == IkeTs(8, 17, 500, 500, ipaddress.ip_address("2001:db8::1").packed,
                          ipaddress.ip_address("2001:db8::ff").packed)
    assert TrafficSelector.from_ike(plain) == ts
    assert TrafficSelector.from_ike(tuple(TrafficSelector.parse("10.0.0.0/8").to_ike())).end == ip(
        "10.255.255.255")
    with pytest.raises(SelectorError):
        TrafficSelector.from_ike((7, 0, 0, 65535, b"\x00" * 16, b"\x00" * 16))
    with pytest.raises(SelectorError):
        TrafficSelector.from_ike((13, 0, 0, 65535, b"", b""))


def test_ts_networks() -> None:
    ts = TrafficSelector.parse("10.0.0.1-10.0.0.6")
    assert [str(n) for n in ts.networks()] == [
        "10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]


def test_ts_intersect() -> None:
    a = TrafficSelector.parse("10.0.0.0/16")
    b = TrafficSelector.parse("10.0.5.0/24[tcp/80]")
    assert a.intersect(b) == b
    assert a.contains(b) and not b.contains(a)
    disjoint = TrafficSelector.parse("10.0.1.0/24")
    assert TrafficSelector.parse("10.0.0.0/24").intersect(disjoint) is None
    tcp = TrafficSelector.parse("10.0.0.0/8[tcp/1000-2000]")
    assert str(tcp.intersect(TrafficSelector.parse("10.0.0.0/8[tcp/1500-3000]"))) == (
        "10.0.0.0/8[tcp/1500-2000]")
    assert tcp.intersect(TrafficSelector.parse("10.0.0.0/8[udp]")) is None
    assert tcp.intersect(TrafficSelector.parse("10.0.0.0/8[tcp/%opaque]")) is None
    opaque = TrafficSelector.parse("10.0.0.0/8[tcp/%opaque]")
    assert opaque.intersect(TrafficSelector.parse("10.0.0.0/8[tcp]")) == opaque
    assert a.intersect(TrafficSelector.any(6)) is None


def test_narrow_lists() -> None:
    proposed = [TrafficSelector.parse("0.0.0.0/0"), TrafficSelector.parse("::/0")]
    allowed = [TrafficSelector.parse("10.1.0.0/24"), TrafficSelector.parse("10.9.0.0/24[udp]")]
    assert narrow(proposed, allowed) == allowed
    assert narrow([TrafficSelector.parse("192.0.2.0/24")], allowed) == []


# -- Selector -------------------------------------------------------------------------------------


def fields(src: str, dst: str, proto: int = 6, sport: int | None = 1234,
           dport: int | None = 80, **kw: int) -> PacketFields:
    version = ipaddress.ip_address(src).version
    return PacketFields(version, ip(src), ip(dst), proto, sport, dport, **kw)


def test_selector_str() -> None:
    assert str(Selector.parse("10.1.0.0/24", "10.2.0.0/24", "tcp", sport=80)) == (
        "10.1.0.0/24[tcp/80] === 10.2.0.0/24")
    assert str(Selector.parse("10.1.0.0/24", "10.2.0.0/24", "tcp", dport=80)) == (
        "10.1.0.0/24 === 10.2.0.0/24[tcp/80]")
    assert str(Selector.parse("10.1.0.0/24", "10.2.0.0/24", "udp")) == (
        "10.1.0.0/24[udp] === 10.2.0.0/24")
    assert str(Selector.parse("10.1.0.0/24", "10.2.0.0/24")) == "10.1.0.0/24 === 10.2.0.0/24"
    assert str(Selector.parse("%any", "2001:db8::/32")) == "::/0 === 2001:db8::/32"


def test_selector_direction() -> None:
    sel = Selector.parse("10.1.0.0/24", "10.2.0.0/24", "tcp", dport=80)
    out_pkt = fields("10.1.0.5", "10.2.0.7", sport=40000, dport=80)
    in_pkt = fields("10.2.0.7", "10.1.0.5", sport=80, dport=40000)
    assert sel.matches(out_pkt, "out")
    assert not sel.matches(out_pkt, "in")
    assert sel.matches(in_pkt, "in")
    assert sel.matches(in_pkt, "fwd")
    assert not sel.matches(in_pkt, "out")
    assert not sel.matches(fields("10.1.0.5", "10.2.0.7", sport=40000, dport=81), "out")
    assert not sel.matches(fields("10.1.0.5", "10.2.0.7", proto=17, dport=80), "out")
    assert not sel.matches(fields("10.1.1.5", "10.2.0.7"), "out")
    with pytest.raises(ValueError):
        sel.matches(out_pkt, "sideways")


def test_selector_matches_real_packets() -> None:
    sel = Selector.parse("10.1.0.0/24", "10.2.0.0/24", "udp", dport=53)
    pkt = IP(src="10.1.0.5", dst="10.2.0.7", id=1) / UDP(sport=5000, dport=53) / Raw(b"q" * 300)
    assert sel.matches(parse_fields(bytes(pkt)), "out")
    frags = fragment(pkt, fragsize=104)
    assert sel.matches(parse_fields(bytes(frags[0])), "out")
    # a non-initial fragment has no ports: only ANY or OPAQUE ports match it (RFC 4301 §4.4.1)
    assert not sel.matches(parse_fields(bytes(frags[1])), "out")
    any_udp = Selector.parse("10.1.0.0/24", "10.2.0.0/24", "udp")
    assert any_udp.matches(parse_fields(bytes(frags[1])), "out")
    opaque = Selector.parse("10.1.0.0/24", "10.2.0.0/24", "udp", dport="%opaque")
    assert opaque.matches(parse_fields(bytes(frags[1])), "out")
    assert not opaque.matches(parse_fields(bytes(frags[0])), "out")


def test_selector_ipv6_with_extension_headers() -> None:
    sel = Selector.parse("2001:db8:1::/48", "2001:db8:2::/48", "tcp", dport=443)
    pkt = (IPv6(src="2001:db8:1::5", dst="2001:db8:2::7") / IPv6ExtHdrHopByHop()
           / IPv6ExtHdrDestOpt() / TCP(sport=4000, dport=443))
    assert sel.matches(parse_fields(bytes(pkt)), "out")
    assert not sel.matches(parse_fields(bytes(pkt)), "in")
    assert not Selector.parse("10.0.0.0/8", "%any").matches(parse_fields(bytes(pkt)), "out")


def test_selector_icmp_type_code() -> None:
    echo = Selector.parse("10.1.0.0/24", "10.2.0.0/24", icmp_type=8)
    assert echo.proto == 1
    assert str(echo) == "10.1.0.0/24[icmp/8:0-8:255] === 10.2.0.0/24[icmp/8:0-8:255]"
    ping = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / ICMP(type=8)))
    reply = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / ICMP(type=0)))
    assert echo.matches(ping, "out")
    assert not echo.matches(reply, "out")
    unreach = Selector.parse("10.1.0.0/24", "10.2.0.0/24", "icmp", icmp_type=3, icmp_code=4)
    frag_needed = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / ICMP(type=3, code=4)))
    port_unreach = parse_fields(bytes(IP(src="10.1.0.5", dst="10.2.0.7") / ICMP(type=3, code=3)))
    assert unreach.matches(frag_needed, "out")
    assert not unreach.matches(port_unreach, "out")
    v6 = Selector.parse("2001:db8::/32", "2001:db8::/32", icmp_type=128)
    assert v6.proto == 58
    assert v6.matches(parse_fields(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2")
                                         / ICMPv6EchoRequest())), "in")


def test_selector_parse_errors() -> None:
    with pytest.raises(SelectorError):
        Selector.parse("10.0.0.0/8", "2001:db8::/32")
    with pytest.raises(SelectorError):
        Selector.parse("10.0.0.0/8", "10.0.0.0/8", sport=80)
    with pytest.raises(SelectorError):
        Selector.parse("10.0.0.0/8", "10.0.0.0/8", "tcp", icmp_type=8)
    with pytest.raises(SelectorError):
        Selector(TrafficSelector.parse("10.0.0.0/8[tcp]"), TrafficSelector.parse("10.0.0.0/8[udp]"))


def test_selector_intersect_and_covers() -> None:
    wide = Selector.parse("10.1.0.0/16", "10.2.0.0/16")
    narrow_sel = Selector.parse("10.1.5.0/24", "10.2.0.0/24", "tcp", dport=(80, 90))
    assert intersect(wide, narrow_sel) == narrow_sel
    assert wide.covers(narrow_sel)
    assert not narrow_sel.covers(wide)
    assert intersect(narrow_sel, Selector.parse("10.1.5.0/24", "10.2.0.0/24", "udp")) is None
    assert intersect(wide, Selector.parse("10.9.0.0/16", "10.2.0.0/16")) is None
    # local tcp from one side, remote udp from the other cannot be combined
    a = Selector(TrafficSelector.parse("10.0.0.0/8[tcp]"), TrafficSelector.parse("10.0.0.0/8"))
    b = Selector(TrafficSelector.parse("10.0.0.0/8"), TrafficSelector.parse("10.0.0.0/8[udp]"))
    assert intersect(a, b) is None
    got = intersect(Selector.parse("10.1.0.0/24", "10.2.0.0/24", "tcp", dport=(1, 100)),
                    Selector.parse("10.1.0.0/25", "10.2.0.0/24", "tcp", dport=(50, 200)))
    assert str(got) == "10.1.0.0/25 === 10.2.0.0/24[tcp/50-100]"


def test_selector_ike_lists() -> None:
    sel = Selector.parse("10.1.0.0/24", "10.2.0.0/24", "udp", sport=500)
    local, remote = sel.to_ike()
    assert Selector(TrafficSelector.from_ike(local), TrafficSelector.from_ike(remote)) == sel
    pairs = Selector.from_ts_lists(
        [TrafficSelector.parse("10.1.0.0/24"), TrafficSelector.parse("2001:db8:1::/48")],
        [TrafficSelector.parse("10.2.0.0/24"), TrafficSelector.parse("2001:db8:2::/48")],
    )
    assert [str(p) for p in pairs] == ["10.1.0.0/24 === 10.2.0.0/24",
                                       "2001:db8:1::/48 === 2001:db8:2::/48"]
    assert sel.reversed().local == sel.remote


ADDR = st.integers(0, 255).map(lambda x: ip("10.0.0.0") + x)


@st.composite
def side(draw: st.DrawFn) -> TrafficSelector:
    a, b = sorted((draw(ADDR), draw(ADDR)))
    proto = draw(st.sampled_from([0, 6, 17, 1]))
    ports = ANY_PORTS
    if proto:
        ports = draw(st.one_of(
            st.just(ANY_PORTS), st.just(OPAQUE_PORTS),
            st.tuples(st.integers(0, 600), st.integers(0, 600)).map(lambda t: tuple(sorted(t))),
        ))
    return TrafficSelector(4, a, b, proto, *ports)


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(side(), side()),
    b=st.tuples(side(), side()),
    pkt=st.tuples(ADDR, ADDR, st.sampled_from([6, 17, 1]), st.integers(0, 600),
                  st.integers(0, 600), st.booleans()),
    direction=st.sampled_from(["out", "in"]),
)
def test_intersection_matches_exactly_the_common_packets(
    a: tuple[TrafficSelector, TrafficSelector], b: tuple[TrafficSelector, TrafficSelector],
    pkt: tuple[int, int, int, int, int, bool], direction: str,
) -> None:
    try:
        sa, sb = Selector(*a), Selector(*b)
    except SelectorError:
        return
    src, dst, proto, p1, p2, frag = pkt
    if frag:
        f = PacketFields(4, src, dst, proto, fragment=True)
    elif proto == 1:
        f = PacketFields(4, src, dst, proto, icmp_type=p1 >> 8, icmp_code=p1 & 0xFF)
    else:
        f = PacketFields(4, src, dst, proto, p1, p2)
    both = intersect(sa, sb)
    expected = sa.matches(f, direction) and sb.matches(f, direction)
    assert (both is not None and both.matches(f, direction)) == expected
