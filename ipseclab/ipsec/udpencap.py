"""UDP encapsulation of ESP for NAT traversal (RFC 3948).

One UDP port (4500) carries three things, told apart by their first bytes (§2.2, §2.3):

* a single ``0xFF`` octet: a NAT-keepalive, which the receiver ignores;
* four zero octets (the non-ESP marker) and then an IKE message (RFC 7296 §2.23);
* anything else: an ESP datagram, whose SPI is never zero.
"""

from __future__ import annotations

import struct
from enum import StrEnum

from ipseclab.ipsec import ip

NAT_T_PORT = 4500
IKE_PORT = 500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
KEEPALIVE = b"\xff"

_UDP = struct.Struct("!HHHH")


class Udp4500Kind(StrEnum):
    ESP = "esp"
    IKE = "ike"
    KEEPALIVE = "keepalive"
    MALFORMED = "malformed"


def classify(payload: bytes) -> Udp4500Kind:
    """What a UDP datagram on port 4500 carries (RFC 3948 §2.2, §2.3)."""
    if payload == KEEPALIVE:
        return Udp4500Kind.KEEPALIVE
    if len(payload) < 8:
        return Udp4500Kind.MALFORMED
    if payload[:4] == NON_ESP_MARKER:
        return Udp4500Kind.IKE
    return Udp4500Kind.ESP


def udp_header(sport: int, dport: int, payload: bytes, src: ip.IPAddress | None = None,
               dst: ip.IPAddress | None = None) -> bytes:
    """The 8-octet UDP header in front of an ESP datagram (RFC 3948 §2.1).

    Over IPv4 the checksum is sent as zero, as §2.1 recommends; IPv6 forbids a zero UDP
    checksum for this use, so there it is computed over the pseudo-header (RFC 8200 §8.1).
    """
    length = 8 + len(payload)
    if src is None or dst is None or src.version == 4:
        return _UDP.pack(sport, dport, length, 0)
    pseudo = ip.pseudo_header(src, dst, ip.PROTO_UDP, length)
    value = ip.checksum(pseudo + _UDP.pack(sport, dport, length, 0) + payload) or 0xFFFF
    return _UDP.pack(sport, dport, length, value)


def parse_udp(segment: bytes) -> tuple[int, int, bytes]:
    """(source port, destination port, payload) of a UDP segment."""
    if len(segment) < 8:
        raise ip.MalformedIP("UDP header truncated")
    sport, dport, length, _ = _UDP.unpack_from(segment)
    if length < 8 or length > len(segment):
        raise ip.MalformedIP("UDP length is inconsistent")
    return sport, dport, segment[8:length]
