"""Path MTU discovery through a tunnel (RFC 4301 §8.2), without root: an ICMP error for one of
our outer packets sets the SA's path MTU, unless it is forged; the next DF packet that would
not fit gets a too-big verdict with the MTU left inside the tunnel, a packet without DF is
protected for fragmentation; the PMTU ages out (§8.2.2). The lab test is in
tests/test_pmtu_lab.py."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.packet import Raw

from ipseclab.config import xfrm
from ipseclab.ipsec import ip, pmtu
from ipseclab.ipsec.engine import IpsecEngine

GCM = "aead 'rfc4106(gcm(aes))' 0x" + "ab" * 20 + " 128"
CBC = ("enc 'cbc(aes)' 0x" + "01" * 16 + " auth-trunc 'hmac(sha256)' 0x" + "cd" * 32 + " 128")
POLICY = """
ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir out tmpl src 192.0.2.1 dst 198.51.100.2 \\
    proto esp reqid 1 mode tunnel
"""


def tunnel(algorithms: str = GCM, encap: str = "") -> str:
    return ("ip xfrm state add src 192.0.2.1 dst 198.51.100.2 proto esp spi 0x5001 reqid 1"
            f" mode tunnel {encap} {algorithms}\n" + POLICY)


def engine(text: str | None = None) -> IpsecEngine:
    e = IpsecEngine()
    config = xfrm.parse(text or tunnel())
    e.load(config.states, config.policies)
    return e


def ping(size: int, df: bool = True) -> bytes:
    """An echo request of ``size`` octets in all from h1 to h2."""
    return bytes(IP(src="10.1.0.10", dst="10.2.0.10", flags="DF" if df else 0) / ICMP()
                 / Raw(bytes(size - 28)))


def frag_needed(wire: bytes, mtu: int, router: str = "192.0.2.254") -> bytes:
    """What a router sends for ``wire``: its ICMP message, from the ICMP header on."""
    return bytes(IP(src=router, dst="192.0.2.1") / ICMP(type=3, code=4, nexthopmtu=mtu)
                 / Raw(wire[:548]))[20:]


def learnt(e: IpsecEngine, mtu: int = 1300, now: float = 0.0) -> bytes:
    """Send one 1400-octet DF ping and let the router answer; returns the wire packet."""
    out = e.outbound(ping(1400), now)
    assert out.action == "protect" and out.mtu == 0
    update = e.icmp_error(frag_needed(out.packet, mtu), 4, now)
    assert update.accepted, update.detail
    return out.packet


def test_frag_needed_sets_the_path_mtu_and_df_packets_are_refused() -> None:
    e = engine()
    learnt(e)
    sa = e.sad.lookup_outbound("esp", reqid=1)
    assert sa.path_mtu == 1300 and e.counters.pmtu_learnt == 1
    out = e.outbound(ping(1400), 1.0)
    # 1300 - 20 (IPv4) - 8 (SPI, sequence) - 8 (IV) - 16 (ICV) = 1248 = 1246 + 2 (trailer).
    assert out.action == "too_big" and out.mtu == 1246 and out.sa is sa
    assert e.counters.outbound_too_big == 1
    fits = e.outbound(ping(1246), 2.0)
    assert fits.action == "protect" and fits.mtu == 0 and len(fits.packet) == 1300
    assert e.outbound(ping(1247), 3.0).action == "too_big"


def test_without_df_the_packet_is_protected_for_fragmentation() -> None:
    e = engine()
    learnt(e)
    out = e.outbound(ping(1400, df=False), 1.0)
    assert out.action == "protect" and out.mtu == 1300 and len(out.packet) > 1300
    assert out.packet[6] & 0x40 == 0  # DF copied from the inner header: clear
    assert all(len(f) <= 1300 for f in ip.fragment_ipv4(out.packet, out.mtu))


def test_an_icmp_error_inside_goes_in_fragments_not_as_another_error() -> None:
    e = engine()
    learnt(e)
    error = bytes(IP(src="10.1.0.10", dst="10.2.0.10", flags="DF") / ICMP(type=3, code=3)
                  / Raw(bytes(1400)))
    out = e.outbound(error, 1.0)
    assert out.action == "protect" and out.mtu == 1300


def test_the_path_mtu_ages_out() -> None:
    e = engine()
    learnt(e, now=100.0)
    assert e.outbound(ping(1400), 100.0 + pmtu.PMTU_AGE - 1).action == "too_big"
    out = e.outbound(ping(1400), 100.0 + pmtu.PMTU_AGE)
    assert out.action == "protect" and out.mtu == 0
    assert e.sad.lookup_outbound("esp", reqid=1).path_mtu == 0


def test_a_rekeyed_sa_starts_from_its_predecessors_path_mtu() -> None:
    e = engine()
    learnt(e, 1300, now=50.0)
    old = e.sad.lookup_outbound("esp", reqid=1)
    rekeyed = xfrm.parse(tunnel().replace("0x5001", "0x5002")).states[0]
    e.sad.add(rekeyed)
    assert e.sad.lookup_outbound("esp", reqid=1) is rekeyed
    assert (rekeyed.path_mtu, rekeyed.path_mtu_at) == (1300, old.path_mtu_at)
    out = e.outbound(ping(1400), 60.0)
    assert out.action == "too_big" and out.sa is rekeyed
    other = xfrm.parse(tunnel().replace("0x5001", "0x5003").replace("reqid 1", "reqid 2"))
    e.sad.add(other.states[0])
    assert other.states[0].path_mtu == 0  # another tunnel's path is not this one's


def test_the_path_mtu_only_shrinks() -> None:
    e = engine()
    wire = learnt(e, 1300)
    sa = e.sad.lookup_outbound("esp", reqid=1)
    assert not e.icmp_error(frag_needed(wire, 1400), 4, 1.0).accepted
    assert e.icmp_error(frag_needed(wire, 1200), 4, 1.0).accepted and sa.path_mtu == 1200


def _forged(wire: bytes, change) -> bytes:
    packet = bytearray(wire)
    change(packet)
    return frag_needed(bytes(packet), 1300)


@pytest.mark.parametrize("what, change, mtu", [
    ("tiny MTU", None, 68),
    ("zero MTU (RFC 1191 §5, an old router)", None, 0),
    ("wrong SPI", lambda p: p.__setitem__(slice(20, 24), b"\x00\x00\x50\x02"), 1300),
    ("an inbound SA's SPI", lambda p: p.__setitem__(slice(20, 24), b"\x00\x00\x60\x01"), 1300),
    ("not our source", lambda p: p.__setitem__(slice(12, 16), bytes([192, 0, 2, 7])), 1300),
    ("wrong peer", lambda p: p.__setitem__(slice(16, 20), bytes([198, 51, 100, 3])), 1300),
    ("a sequence number never sent", lambda p: struct.pack_into("!I", p, 24, 99), 1300),
    ("sequence number 0", lambda p: struct.pack_into("!I", p, 24, 0), 1300),
    ("DF clear", lambda p: p.__setitem__(6, 0), 1300),
    ("not ESP", lambda p: p.__setitem__(9, 6), 1300),
    ("MTU above the packet", None, 1500),
])
def test_forged_or_useless_icmp_is_ignored(what: str, change, mtu: int) -> None:
    text = tunnel() + ("ip xfrm state add src 198.51.100.2 dst 192.0.2.1 proto esp spi 0x6001"
                       f" reqid 1 mode tunnel {GCM}\n")
    e = engine(text)
    wire = e.outbound(ping(1400), 0.0).packet
    message = frag_needed(wire, mtu) if change is None else _forged(wire, change)
    update = e.icmp_error(message, 4, 0.0)
    assert not update.accepted, what
    assert all(sa.path_mtu == 0 for sa in e.sad), what
    assert e.outbound(ping(1400), 1.0).action == "protect"
    assert e.counters.pmtu_ignored == 1 and e.counters.pmtu_learnt == 0


def test_other_icmp_messages_are_ignored() -> None:
    e = engine()
    wire = e.outbound(ping(1400), 0.0).packet
    for kind, code in ((3, 1), (11, 0), (8, 0)):
        message = bytes(ICMP(type=kind, code=code) / Raw(wire[:548]))
        assert not e.icmp_error(message, 4, 0.0).accepted


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(4, 6))
def test_garbage_is_a_verdict_never_an_exception(data: bytes, version: int) -> None:
    e = engine()
    e.outbound(ping(100), 0.0)
    assert not e.icmp_error(data, version, 0.0).accepted


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 40))
def test_a_quote_cut_short_is_ignored(cut: int) -> None:
    """RFC 792 quotes the IP header and 64 bits: for ESP, SPI and sequence number, enough."""
    e = engine()
    wire = e.outbound(ping(1400), 0.0).packet
    message = frag_needed(wire, 1300)[: 8 + cut]
    assert e.icmp_error(message, 4, 0.0).accepted == (cut >= 28)


def test_esp_in_udp_is_matched_by_the_spi_behind_the_udp_header() -> None:
    e = engine(tunnel(encap="encap espinudp 4500 4500 0.0.0.0"))
    wire = e.outbound(ping(1400), 0.0).packet
    assert wire[9] == ip.PROTO_UDP
    assert IP(frag_needed(wire, 1300)[8:]).dport == 4500
    assert e.icmp_error(frag_needed(wire, 1300), 4, 0.0).accepted
    # 1300 - 20 - 8 (UDP) - 8 - 8 - 16 = 1240 = 1238 + 2.
    assert e.outbound(ping(1400), 1.0).mtu == 1238
    bad_port = bytearray(wire)
    struct.pack_into("!H", bad_port, 22, 4501)
    e2 = engine(tunnel(encap="encap espinudp 4500 4500 0.0.0.0"))
    e2.outbound(ping(1400), 0.0)
    assert not e2.icmp_error(frag_needed(bytes(bad_port), 1300), 4, 0.0).accepted


@pytest.mark.parametrize("algorithms, encap", [(GCM, ""), (CBC, ""),
                                                (CBC, "encap espinudp 4500 4500 0.0.0.0")])
@pytest.mark.parametrize("mtu", [576, 1000, 1281, 1299, 1300])
def test_inner_limit_is_the_largest_packet_that_fits(algorithms: str, encap: str,
                                                     mtu: int) -> None:
    e = engine(tunnel(algorithms, encap))
    sa = e.sad.lookup_outbound("esp", reqid=1)
    limit = pmtu.inner_limit([sa], mtu)
    sizes = {n: len(e.outbound(ping(n, df=False)).packet) for n in range(limit - 20, limit + 2)}
    assert max(n for n, size in sizes.items() if size <= mtu) == limit


def test_inner_ipv6_packets_are_refused_down_to_1280_then_fragmented() -> None:
    """IPv6 inside IPv4 leaves with DF clear (only an IPv4 inner header has a DF to copy),
    so the path MTU comes from the SA's IPv4 traffic; IPv6 senders then hear of it."""
    text = tunnel() + ("ip xfrm policy add src 2001:db8:1::/64 dst 2001:db8:2::/64 dir out"
                       " tmpl src 192.0.2.1 dst 198.51.100.2 proto esp reqid 1 mode tunnel\n")
    v6 = bytes(IPv6(src="2001:db8:1::10", dst="2001:db8:2::10") / TCP() / Raw(bytes(1400)))
    e = engine(text)
    assert e.outbound(v6, 0.0).packet[6] & 0x40 == 0
    learnt(e, 1400)
    out = e.outbound(v6, 1.0)
    assert out.action == "too_big" and out.mtu == 1346
    e = engine(text)
    learnt(e, 1300)  # leaves 1246 < 1280
    out = e.outbound(v6, 1.0)
    assert out.action == "protect" and out.mtu == 1300


def test_packet_too_big_for_an_ipv6_outer_packet() -> None:
    text = ("ip xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x5001 reqid 1"
            f" mode tunnel {GCM}\n"
            "ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir out"
            " tmpl src 2001:db8::1 dst 2001:db8::2 proto esp reqid 1 mode tunnel\n")
    e = engine(text)
    wire = e.outbound(ping(1400), 0.0).packet
    message = bytes(ICMPv6PacketTooBig(mtu=1280) / Raw(wire[:1232]))
    assert not e.icmp_error(bytes(ICMPv6PacketTooBig(mtu=1279) / Raw(wire[:1232])), 6,
                            0.0).accepted
    assert e.icmp_error(message, 6, 0.0).accepted
    # 1280 - 40 (IPv6) - 8 - 8 - 16 = 1208 = 1206 + 2.
    out = e.outbound(ping(1400), 1.0)
    assert out.action == "too_big" and out.mtu == 1206


def test_icmp_too_big_is_what_scapy_reads() -> None:
    original = ping(1400)
    error = ip.icmp_too_big(ip.as_address("10.1.0.1"), original, 1246)
    parsed = IP(error)
    assert parsed.src == "10.1.0.1" and parsed.dst == "10.1.0.10" and len(error) == 576
    assert parsed[ICMP].type == 3 and parsed[ICMP].code == 4
    assert parsed[ICMP].nexthopmtu == 1246
    assert ip.checksum(error[20:]) == 0 and ip.checksum(error[:20]) == 0
    assert error[28:] == original[:548]
    v6 = bytes(IPv6(src="2001:db8:1::10", dst="2001:db8:2::10") / TCP() / Raw(bytes(1400)))
    error6 = ip.icmp_too_big(ip.as_address("2001:db8:1::1"), v6, 1346)
    parsed6 = IPv6(error6)
    assert len(error6) == 1280 and parsed6.dst == "2001:db8:1::10"
    assert parsed6[ICMPv6PacketTooBig].mtu == 1346
    chk = parsed6[ICMPv6PacketTooBig].cksum
    del parsed6[ICMPv6PacketTooBig].cksum
    assert IPv6(bytes(parsed6))[ICMPv6PacketTooBig].cksum == chk
