"""The sans-IO data plane: SPD + SAD + ESP/AH together (RFC 4301 §5), lifetimes, NAT fix-ups."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw

from ipseclab.config import xfrm
from ipseclab.ipsec import esp
from ipseclab.ipsec.engine import IpsecEngine
from ipseclab.ipsec.ip import parse_header
from ipseclab.ipsec.verdict import Status

GCM = "aead 'rfc4106(gcm(aes))' 0x" + "ab" * 20 + " 128"
SHA = "auth-trunc 'hmac(sha256)' 0x" + "cd" * 32 + " 128"


def engines(text_out: str, text_in: str | None = None) -> tuple[IpsecEngine, IpsecEngine]:
    """A sender and a receiver loaded from the same ip xfrm text (each gets its own SAs)."""
    a, b = IpsecEngine(), IpsecEngine()
    for engine, text in ((a, text_out), (b, text_in or text_out)):
        config = xfrm.parse(text)
        engine.load(config.states, config.policies)
    return a, b


TUNNEL = f"""
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 mode tunnel {GCM}
ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir out tmpl src 192.0.2.1 dst 192.0.2.2 \\
    proto esp reqid 1 mode tunnel
ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir fwd tmpl src 192.0.2.1 dst 192.0.2.2 \\
    proto esp reqid 1 mode tunnel
ip xfrm policy add src 10.9.0.0/24 dst 0.0.0.0/0 dir out action block
"""
PING = bytes(IP(src="10.1.0.10", dst="10.2.0.10") / ICMP() / Raw(b"secret"))


def test_protect_then_unprotect_through_the_spd() -> None:
    gw1, gw2 = engines(TUNNEL)
    out = gw1.outbound(PING)
    assert out.action == "protect" and out.sa.spi == 0x1001
    assert b"secret" not in out.packet and IP(out.packet).proto == 50
    result = gw2.inbound(out.packet)
    assert result.status is Status.OK and result.inner == PING
    assert gw1.sad.lookup_outbound("esp", reqid=1).counters.packets == 1


def test_bypass_discard_and_default() -> None:
    gw1, _ = engines(TUNNEL)
    other = bytes(IP(src="10.1.0.10", dst="10.3.0.1") / ICMP())
    assert gw1.outbound(other).action == "bypass"  # no policy: Linux lets it pass
    blocked = bytes(IP(src="10.9.0.5", dst="10.2.0.10") / ICMP())
    assert gw1.outbound(blocked).action == "discard"
    strict = IpsecEngine(default_outbound="discard")
    assert strict.outbound(other).action == "discard"


def test_missing_sa_asks_for_one() -> None:
    config = xfrm.parse(TUNNEL)
    engine = IpsecEngine()
    engine.load([], config.policies)
    out = engine.outbound(PING)
    assert out.action == "acquire" and out.template.reqid == 1


def test_inner_packet_outside_the_policy_is_refused() -> None:
    """A peer holding the key still may not send what the SPD does not allow (RFC 4301 §5.2)."""
    gw1, gw2 = engines(TUNNEL)
    sa = gw1.sad.lookup_outbound("esp", reqid=1)
    assert gw2.inbound(esp.encapsulate(sa, PING)).status is Status.OK
    sneaky = bytes(IP(src="10.9.9.9", dst="10.2.0.10") / ICMP())
    result = gw2.inbound(esp.encapsulate(sa, sneaky))
    assert result.status is Status.POLICY_MISMATCH  # no in/fwd policy covers 10.9.9.9
    assert "no in/fwd policy" in result.detail
    config = xfrm.parse("ip xfrm policy add src 10.1.0.66/32 dst 10.2.0.0/24 dir fwd "
                        "action block\n" + TUNNEL)  # same priority: the first one wins
    strict = IpsecEngine()
    strict.load(config.states, config.policies)
    blocked = bytes(IP(src="10.1.0.66", dst="10.2.0.10") / ICMP())
    result = strict.inbound(esp.encapsulate(sa, blocked))
    assert result.status is Status.POLICY_MISMATCH and "discards" in result.detail


def test_transport_mode_needs_no_inbound_policy() -> None:
    text = (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 "
            f"mode transport {GCM}\n")
    a, b = engines(text)
    packet = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP())
    assert b.inbound(esp.encapsulate(a.sad.lookup_outbound("esp", reqid=1), packet)).ok


def test_sa_selector_is_checked() -> None:
    text = (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 "
            f"mode tunnel {GCM} sel src 10.1.0.0/24 dst 10.2.0.0/24\n"
            "ip xfrm policy add src 0.0.0.0/0 dst 0.0.0.0/0 dir fwd tmpl src 192.0.2.1 "
            "dst 192.0.2.2 proto esp reqid 1 mode tunnel\n")
    gw1, gw2 = engines(text)
    sa = gw1.sad.lookup_outbound("esp", reqid=1)
    assert gw2.inbound(esp.encapsulate(sa, PING)).status is Status.OK
    wrong = bytes(IP(src="10.7.0.1", dst="10.2.0.10") / ICMP())
    assert gw2.inbound(esp.encapsulate(sa, wrong)).status is Status.POLICY_MISMATCH


def test_ah_around_esp_bundle() -> None:
    text = f"""
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 mode transport {GCM}
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x2001 reqid 1 mode transport {SHA}
ip xfrm policy add src 192.0.2.1 dst 192.0.2.2 dir out tmpl proto esp reqid 1 \\
    tmpl proto ah reqid 1
"""
    a, b = engines(text)
    packet = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=50000) / Raw(b"x" * 30))
    out = a.outbound(packet)
    assert out.action == "protect" and IP(out.packet).proto == 51  # AH outside, ESP inside
    result = b.inbound(out.packet)
    assert result.status is Status.OK and result.inner == packet


def test_unknown_spi_and_garbage_are_verdicts() -> None:
    _, gw2 = engines(TUNNEL)
    assert gw2.inbound(b"\x45\x00").status is Status.MALFORMED
    junk = bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / Raw(b"\x00\x00\x99\x99" * 8))
    assert gw2.inbound(junk).status is Status.NO_SA
    assert gw2.counters.inbound_no_sa == 1 and gw2.counters.inbound_malformed == 1


def test_lifetimes_raise_soft_then_hard_and_remove_the_sa() -> None:
    text = (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 "
            f"mode tunnel {GCM} limit packet-soft 2 limit packet-hard 3\n"
            + TUNNEL.split("\n", 2)[2])
    gw1, _ = engines(text)
    actions = [gw1.outbound(PING, now=10.0).action for _ in range(4)]
    assert actions == ["protect", "protect", "protect", "acquire"]
    kinds = [(e.hard, e.event.limit.value) for e in gw1.events]
    assert kinds == [(False, "packets"), (True, "packets")]
    assert len(gw1.sad) == 0


def test_time_lifetime_expires_without_traffic() -> None:
    text = (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 "
            f"mode tunnel {GCM} limit time-soft 30 limit time-hard 60\n")
    gw1, _ = engines(text)
    gw1.start_lifetimes(100.0)
    assert gw1.next_deadline() == 130.0
    assert gw1.poll(129.0) == []
    assert [e.hard for e in gw1.poll(131.0)] == [False]
    assert [e.hard for e in gw1.poll(161.0)] == [True]
    assert len(gw1.sad) == 0


def test_transport_mode_behind_nat_fixes_the_tcp_checksum() -> None:
    """RFC 3948 §3.1.2: the NAT rewrote the addresses the TCP checksum was computed over."""
    text = (f"ip xfrm state add src 10.0.0.5 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 "
            f"mode transport {GCM} encap espinudp 4500 4500 0.0.0.0\n")
    sender, receiver = engines(text)
    segment = bytes(IP(src="10.0.0.5", dst="192.0.2.2") / TCP(sport=1234, dport=80) / Raw(b"hi"))
    sa = sender.sad.lookup_outbound("esp", reqid=1)
    wire = bytearray(esp.encapsulate(sa, segment))
    wire[12:16] = bytes([203, 0, 113, 7])  # what the NAT does to the outer (= only) header
    natted = IP(bytes(wire))
    del natted.chksum
    result = receiver.inbound(bytes(natted))
    assert result.status is Status.OK
    rebuilt = IP(result.inner)
    assert rebuilt.src == "203.0.113.7"
    recomputed = IP(bytes(rebuilt))
    del recomputed[TCP].chksum
    assert IP(bytes(recomputed))[TCP].chksum == rebuilt[TCP].chksum


def test_inbound_datagram_from_a_udp_socket() -> None:
    text = (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 "
            f"mode tunnel {GCM} encap espinudp 4500 4500 0.0.0.0\n")
    gw1, gw2 = engines(text)
    gw2.spd.add(xfrm.parse(TUNNEL).policies[1])  # the fwd policy
    wire = esp.encapsulate(gw1.sad.lookup_outbound("esp", reqid=1), PING)
    hdr = parse_header(wire)
    datagram = wire[hdr.header_length + 8:]
    result = gw2.inbound_datagram(datagram, hdr.src, hdr.dst)
    assert result.status is Status.OK and result.inner == PING
