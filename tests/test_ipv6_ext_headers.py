"""Inbound IPv6 extension headers: Destination Options before ESP/AH, Routing headers and AH.

RFC 4303 §3.1.1 and RFC 4302 §3.1.1 let a sender put a Destination Options header in front
of ESP or AH; RFC 4302 §3.3.3.1.2 and Appendix A.2 say how AH covers a Routing header and
the destination address, which change on the way.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrRouting
from scapy.packet import Raw

from ipseclab.capture.decode import KeyRing, decode_packet
from ipseclab.config import xfrm
from ipseclab.crypto import transforms
from ipseclab.ipsec import ah, esp, ip
from ipseclab.ipsec.engine import IpsecEngine
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.verdict import Status

SRC, DST = "2001:db8::1", "2001:db8::2"
KEY = bytes(range(32))
ENC_KEY = bytes(range(20))
UDP_PACKET = bytes(IPv6(src=SRC, dst=DST, hlim=9) / UDP(sport=4000, dport=5000)
                   / Raw(b"options in front"))
# A Destination Options header: option 0x3e may change en route (0x20 bit, RFC 8200 §4.2),
# option 0x1e may not. Next Header is filled in by _with_dest_opts.
_OPTIONS = (bytes((0x3E, 4)) + b"\x11\x22\x33\x44" + bytes((0x1E, 2)) + b"\x55\x66"
            + b"\x01\x02\x00\x00")  # PadN to 16 octets with the two header octets
MUTABLE_DATA, IMMUTABLE_DATA = 2, 8  # offsets inside _OPTIONS (after the 2 header octets)


def _sa(protocol: str, dst: str = DST, mode: str = "transport") -> SecurityAssociation:
    """A fresh SA with fixed keys, so a sender and any number of receivers agree."""
    if protocol == "ah":
        return SecurityAssociation(spi=0x1000, src=SRC, dst=dst, protocol="ah", mode=mode,
                                   integrity=transforms.integrity("sha256"), integrity_key=KEY)
    return SecurityAssociation(spi=0x2000, src=SRC, dst=dst, protocol="esp", mode=mode,
                               encryption=transforms.encryption("aes128gcm16"),
                               encryption_key=ENC_KEY)


def _with_dest_opts(packet: bytes) -> bytes:
    """Insert a Destination Options header right after the fixed IPv6 header."""
    dest_opts = bytes((packet[6], (2 + len(_OPTIONS)) // 8 - 1)) + _OPTIONS
    assert len(dest_opts) == 16
    head = bytearray(packet[:40])
    head[6] = ip.PROTO_DSTOPTS
    struct.pack_into("!H", head, 4, len(packet) - 40 + len(dest_opts))
    return bytes(head) + dest_opts + packet[40:]


def _esp_after_dest_opts() -> tuple[bytes, bytes]:
    """(wire packet with Destination Options before ESP, the packet the receiver delivers)."""
    wire = esp.encapsulate(_sa("esp"), UDP_PACKET)  # ESP does not cover the IP header
    return _with_dest_opts(wire), _with_dest_opts(UDP_PACKET)


# -- 1. Destination Options before ESP or AH ----------------------------------------------------

def test_inbound_header_walks_destination_options() -> None:
    wire, _ = _esp_after_dest_opts()
    assert ip.parse_header(wire).next_header == ip.PROTO_DSTOPTS  # outbound: unchanged
    hdr = ip.parse_inbound_header(wire)
    assert hdr.next_header == ip.PROTO_ESP and hdr.header_length == 40 + 16
    assert hdr.nh_offset == 40


def test_esp_after_destination_options_decapsulates() -> None:
    wire, expected = _esp_after_dest_opts()
    result = esp.decapsulate(_sa("esp"), wire)
    assert result.status is Status.OK, result.detail
    assert result.inner == expected  # the options stay in front of UDP


def test_esp_decapsulate_refuses_what_is_not_esp() -> None:
    sa = _sa("esp")
    plain = bytes(IPv6(src=SRC, dst=DST) / ICMPv6EchoRequest(data=b"x" * 64))
    for packet in (plain, _with_dest_opts(plain)):
        result = esp.decapsulate(sa, packet)
        assert result.status is Status.MALFORMED, result.detail
    assert sa.counters.auth_failed == 0 and sa.counters.malformed == 2


def test_engine_inbound_esp_after_destination_options() -> None:
    config = xfrm.parse(
        f"ip xfrm state add src {SRC} dst {DST} proto esp spi 0x2000 mode transport "
        f"aead 'rfc4106(gcm(aes))' 0x{ENC_KEY.hex()} 128\n")
    engine = IpsecEngine()
    engine.load(config.states, config.policies)
    wire, expected = _esp_after_dest_opts()
    result = engine.inbound(wire)
    assert result.status is Status.OK, result.detail
    assert result.inner == expected


def test_decoder_recognises_esp_after_destination_options() -> None:
    wire, expected = _esp_after_dest_opts()
    frame = decode_packet(1, 0.0, wire, KeyRing(sas=[_sa("esp")]))
    assert frame.proto == "esp" and frame.spi == 0x2000
    assert frame.status == "ok" and frame.inner_bytes == expected


def _ah_after_dest_opts() -> bytes:
    """IPv6 / Destination Options / AH / UDP with the ICV computed here by hand (RFC 4302
    §3.3.3.1.2.1): traffic class, flow label, hop limit and the mutable option's data as
    zero, the AH ICV field as zero; immutable options as they are."""
    plain = _with_dest_opts(UDP_PACKET)
    upper = plain[56:]
    field = 16 + 4  # HMAC-SHA-256-128 padded to 64 bits for IPv6 (RFC 4302 §2.6)
    ah_zeroed = struct.pack("!BBHII", ip.PROTO_UDP, (12 + field) // 4 - 2, 0, 0x1000, 1)
    ah_zeroed += bytes(field)
    header = bytearray(plain[:56])
    struct.pack_into("!H", header, 4, 16 + len(ah_zeroed) + len(upper))
    header[40] = ip.PROTO_AH
    covered = bytearray(header)
    covered[0:4] = b"\x60\x00\x00\x00"
    covered[7] = 0
    covered[42 + MUTABLE_DATA : 42 + MUTABLE_DATA + 4] = bytes(4)
    icv = hmac.new(KEY, bytes(covered) + ah_zeroed + upper, hashlib.sha256).digest()[:16]
    return bytes(header) + ah_zeroed[:12] + icv + bytes(4) + upper


def test_ah_after_destination_options_verifies() -> None:
    wire = _ah_after_dest_opts()
    result = ah.decapsulate(_sa("ah"), wire)
    assert result.status is Status.OK, result.detail
    assert result.inner == _with_dest_opts(UDP_PACKET)


def test_ah_covers_destination_options_before_it() -> None:
    wire = bytearray(_ah_after_dest_opts())
    wire[42 + MUTABLE_DATA] ^= 0xFF  # may change en route: not covered
    wire[7] = 3  # hop limit
    assert ah.decapsulate(_sa("ah"), bytes(wire)).status is Status.OK
    wire[42 + IMMUTABLE_DATA] ^= 0xFF  # may not change: covered
    assert ah.decapsulate(_sa("ah"), bytes(wire)).status is Status.AUTH_FAILED


def test_engine_and_decoder_see_ah_after_destination_options() -> None:
    wire = _ah_after_dest_opts()
    config = xfrm.parse(
        f"ip xfrm state add src {SRC} dst {DST} proto ah spi 0x1000 mode transport "
        f"auth-trunc 'hmac(sha256)' 0x{KEY.hex()} 128\n")
    engine = IpsecEngine()
    engine.load(config.states, config.policies)
    result = engine.inbound(wire)
    assert result.status is Status.OK, result.detail
    frame = decode_packet(1, 0.0, wire, KeyRing(sas=[_sa("ah")]))
    assert frame.proto == "ah" and frame.status == "ok"


# -- 2. AH and Routing headers --------------------------------------------------------------------

HOA, COA = "2001:db8:aa::1", "2001:db8:bb::1"  # Mobile IPv6 home and care-of address


def _addr(text: str) -> bytes:
    return ip.as_address(text).packed


def test_ah_with_type2_routing_header() -> None:
    """RFC 6275 §6.4: the mobile node swaps the destination (care-of address) with the home
    address in the Type 2 header and sets Segments Left to 0 before AH sees the packet."""
    packet = bytes(IPv6(src=SRC, dst=COA)
                   / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[HOA])
                   / UDP(dport=5000) / Raw(b"to the home address"))
    wire = ah.encapsulate(_sa("ah", HOA), packet)
    assert ah.decapsulate(_sa("ah", HOA), wire).status is Status.OK  # as seen on the link
    arrived = bytearray(wire)
    assert arrived[40 + 3] == 1 and arrived[48:64] == _addr(HOA)
    arrived[24:40], arrived[48:64] = wire[48:64], wire[24:40]
    arrived[40 + 3] = 0
    result = ah.decapsulate(_sa("ah", HOA), bytes(arrived))
    assert result.status is Status.OK, result.detail
    for tampered in (wire, bytes(arrived)):
        forged = bytearray(tampered)
        forged[63] ^= 1  # the address in the Routing header
        assert ah.decapsulate(_sa("ah", HOA), bytes(forged)).status is Status.AUTH_FAILED


SEGMENTS = ["2001:db8:5::1", "2001:db8:5::2", "2001:db8:5::3"]  # Segment List[0..2]


def _srh_packet(tlv_type: int) -> bytes:
    """IPv6 / SRH (three segments, one 8-octet TLV) / UDP, as the source sends it."""
    tlv = bytes((tlv_type, 6)) + b"tlvdat"
    body = b"".join(_addr(s) for s in SEGMENTS) + tlv
    srh = struct.pack("!BBBBBBH", ip.PROTO_UDP, (8 + len(body)) // 8 - 1, 4, 2, 2, 0, 0) + body
    upper = bytes(UDP(sport=1, dport=2) / Raw(b"segment routed"))
    return ip.ipv6_header(ip.as_address(SRC), ip.as_address(SEGMENTS[2]), ip.PROTO_ROUTING,
                          len(srh) + len(upper)) + srh + upper


def _sr_endpoint(packet: bytes) -> bytes:
    """What an SR endpoint does (RFC 8754 §4.3.1.1): Segments Left - 1, new destination."""
    out = bytearray(packet)
    left = out[43] - 1
    out[43] = left
    out[24:40] = out[48 + 16 * left : 64 + 16 * left]
    return bytes(out)


def test_ah_with_segment_routing_header_verifies_at_every_hop() -> None:
    wire = ah.encapsulate(_sa("ah", SEGMENTS[0]), _srh_packet(0x05))
    hop = wire
    for _ in range(3):
        result = ah.decapsulate(_sa("ah", SEGMENTS[0]), hop)
        assert result.status is Status.OK, result.detail
        if hop[43] == 0:
            break
        hop = _sr_endpoint(hop)
    assert hop[43] == 0 and hop[24:40] == _addr(SEGMENTS[0])
    forged = bytearray(hop)
    forged[48 + 16 + 15] ^= 1  # Segment List[1]
    assert ah.decapsulate(_sa("ah", SEGMENTS[0]), bytes(forged)).status is Status.AUTH_FAILED


@pytest.mark.parametrize(("tlv_type", "covered"), [(0x05, True), (0x80, False)])
def test_srh_tlvs_128_and_up_may_change(tlv_type: int, covered: bool) -> None:
    """RFC 8754 §8.2: TLV types 128-255 may change en route; AH counts their data as zero."""
    wire = bytearray(ah.encapsulate(_sa("ah", SEGMENTS[0]), _srh_packet(tlv_type)))
    wire[40 + 8 + 48 + 2] ^= 0xFF  # first octet of the TLV's data
    status = ah.decapsulate(_sa("ah", SEGMENTS[0]), bytes(wire)).status
    assert status is (Status.AUTH_FAILED if covered else Status.OK)


def test_arrival_view_leaves_other_headers_alone() -> None:
    v4 = bytes.fromhex("4500001c000000004011000000000000c0000201c0000202")
    assert ah.arrival_view(v4[:20]) == v4[:20]
    plain = bytes(IPv6(src=SRC, dst=DST))
    assert ah.arrival_view(plain) == plain
    unknown = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrRouting(type=3, segleft=1,
                                                              addresses=[HOA]))
    assert ah.arrival_view(unknown) == unknown
