"""Fragmenting outer packets the link is too small for: IPv6 (RFC 8200 §4.5).

Scapy's own reassembly (``defragment6``) puts the fragments back together, so the check is
independent of our code; a property test runs random sizes and MTUs.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, defragment6
from scapy.layers.ipsec import ESP

from ipseclab.ipsec import ip


def esp_packet(size: int, *extension) -> bytes:
    layers = IPv6(src="2001:db8::1", dst="2001:db8::2")
    for ext in extension:
        layers = layers / ext
    return bytes(layers / ESP(spi=0x1001, seq=7, data=os.urandom(size)))


def reassembled(fragments: list[bytes]) -> bytes:
    return bytes(defragment6([IPv6(f) for f in fragments]))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1200, 9000), mtu=st.integers(1280, 1500),
       ident=st.integers(0, 2**32 - 1))
def test_fragments_fit_and_reassemble(size: int, mtu: int, ident: int) -> None:
    packet = esp_packet(size)
    fragments = ip.fragment_ipv6(packet, mtu, ident)
    if len(packet) <= mtu:
        assert fragments == [packet]
        return
    assert all(len(f) <= mtu for f in fragments) and len(fragments) >= 2
    headers = [IPv6(f)[IPv6ExtHdrFragment] for f in fragments]
    assert {h.id for h in headers} == {ident} and {h.nh for h in headers} == {ip.PROTO_ESP}
    assert [h.m for h in headers] == [1] * (len(fragments) - 1) + [0]
    assert all(len(f) % 8 == 0 for f in fragments[:-1])  # 40 + 8 + a multiple of 8
    assert reassembled(fragments) == packet


def test_hop_by_hop_stays_in_every_fragment() -> None:
    """The unfragmentable part (here a Hop-by-Hop header) leads every fragment."""
    packet = esp_packet(3000, IPv6ExtHdrHopByHop())
    fragments = ip.fragment_ipv6(packet, 1280, 99)
    for fragment in fragments:
        parsed = IPv6(fragment)
        assert parsed.nh == ip.PROTO_HOPOPTS and IPv6ExtHdrHopByHop in parsed
        assert parsed[IPv6ExtHdrHopByHop].nh == ip.PROTO_FRAGMENT
    assert reassembled(fragments) == packet


def test_bad_input_is_refused() -> None:
    packet = esp_packet(3000)
    with pytest.raises(ip.MalformedIP, match="minimum"):
        ip.fragment_ipv6(packet, 1000, 1)
    with pytest.raises(ip.MalformedIP, match="not an IPv6"):
        ip.fragment_ipv6(bytes(20), 1280, 1)
    with pytest.raises(ip.MalformedIP, match="already"):
        ip.fragment_ipv6(ip.fragment_ipv6(packet, 1500, 1)[0], 1280, 2)
