"""AH (RFC 4302): every integrity algorithm, both modes, IPv4 and IPv6, mutable fields, ESN."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import HBHOptUnknown, IPv6, IPv6ExtHdrHopByHop
from scapy.packet import Raw

from conftest import sa_pair
from ipseclab.crypto import transforms
from ipseclab.ipsec import ah
from ipseclab.ipsec.verdict import Status

V4 = bytes(IP(src="192.0.2.1", dst="192.0.2.2", ttl=9, tos=0x10) / UDP(dport=50000)
           / Raw(b"authenticated, not secret"))
V6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9)
           / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x3e, optdata=b"\x01\x02")])
           / UDP(dport=50000) / Raw(b"authenticated, not secret"))


@pytest.mark.parametrize("integ", sorted(transforms.INTEGRITY))
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
def test_round_trip(integ: str, mode: str, v6: bool, esn: bool) -> None:
    out, inb = sa_pair(None, integ, protocol="ah", mode=mode, v6=v6, esn=esn)
    packet = V6 if v6 else V4
    wire = ah.encapsulate(out, packet)
    assert b"authenticated, not secret" in wire  # AH encrypts nothing
    ah_len = (wire[(40 if v6 else 20) + (8 if v6 and mode == "transport" else 0) + 1] + 2) * 4
    assert ah_len % (8 if v6 else 4) == 0  # RFC 4302 §2.2: 64-bit alignment for IPv6
    result = ah.decapsulate(inb, wire)
    assert result.status is Status.OK, result.detail
    if mode == "tunnel":
        assert result.inner == packet
    else:
        assert result.payload == packet[-len(result.payload):]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_mutable_fields_may_change_in_transit(v6: bool) -> None:
    out, inb = sa_pair(None, "sha256", protocol="ah", v6=v6)
    wire = bytearray(ah.encapsulate(out, V6 if v6 else V4))
    if v6:
        wire[7] = 1  # hop limit
        wire[1] |= 0x0F  # traffic class and flow label
        wire[3] = 0x55
    else:
        wire[8] = 1  # TTL, then a new checksum as a router would write
        wire[1] = 0xB8  # DSCP/ECN rewritten on the way
        wire[10:12] = b"\x00\x00"
    assert ah.decapsulate(inb, bytes(wire)).status is Status.OK


def test_an_option_marked_as_changing_en_route_is_not_covered() -> None:
    """RFC 8200 §4.2: an option type with the 0x20 bit may change; AH counts it as zero."""
    out, inb = sa_pair(None, "sha256", protocol="ah", v6=True)
    wire = bytearray(ah.encapsulate(out, V6))
    opt = wire.index(bytes([0x3E, 2, 1, 2]))
    wire[opt + 2] = 0x99
    assert ah.decapsulate(inb, bytes(wire)).status is Status.OK


@pytest.mark.parametrize("offset", [12, 16, 9, 30])  # src, dst, protocol, payload
def test_immutable_fields_are_covered(offset: int) -> None:
    out, inb = sa_pair(None, "sha1", protocol="ah")
    wire = bytearray(ah.encapsulate(out, V4))
    wire[offset] ^= 0x01
    assert ah.decapsulate(inb, bytes(wire)).status in (Status.AUTH_FAILED, Status.MALFORMED)


def test_nat_breaks_ah() -> None:
    """Why AH cannot cross a NAT: the source address is covered by the ICV."""
    out, inb = sa_pair(None, "sha256", protocol="ah")
    wire = bytearray(ah.encapsulate(out, V4))
    wire[12:16] = bytes([203, 0, 113, 9])
    assert ah.decapsulate(inb, bytes(wire)).status is Status.AUTH_FAILED


def test_replay_and_window() -> None:
    out, inb = sa_pair(None, "sha256", protocol="ah", replay_window=32)
    wires = [ah.encapsulate(out, V4) for _ in range(40)]
    assert ah.decapsulate(inb, wires[39]).status is Status.OK
    assert ah.decapsulate(inb, wires[39]).status is Status.REPLAY
    assert ah.decapsulate(inb, wires[0]).status is Status.TOO_OLD
    assert ah.decapsulate(inb, wires[20]).status is Status.OK


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_give_a_verdict(data: bytes) -> None:
    _, inb = sa_pair(None, "sha256", protocol="ah")
    packet = bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=51) / Raw(data))
    assert ah.decapsulate(inb, packet).status is not Status.OK
    assert ah.decapsulate(inb, data).status is not Status.OK
