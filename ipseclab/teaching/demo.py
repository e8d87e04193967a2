"""Ready-made SAs and packets for notebooks and tests, with fixed, printable keys.

Notebooks need results that look the same every run. Keys are derived from a seed with
SHA-256 (lab keys only: never use them anywhere real); the inner packets are built with
:mod:`ipseclab.ipsec.ip`, so no Scapy is needed to make one.
"""

from __future__ import annotations

import hashlib
import struct

from ipseclab.crypto import transforms
from ipseclab.errors import ConfigError
from ipseclab.ipsec import ip
from ipseclab.ipsec.sa import Mode, Protocol, SecurityAssociation, UdpEncap

ENDPOINTS = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::1", "2001:db8::2")}
HOSTS = {4: ("10.1.0.1", "10.2.0.1"), 6: ("2001:db8:1::1", "2001:db8:2::1")}


def lab_key(size: int, seed: str = "ipseclab") -> bytes:
    """``size`` bytes derived from ``seed``: the same key every run, in every notebook."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def parse_proposal(proposal: str, protocol: str = "esp"
                   ) -> tuple[transforms.EncryptionAlgorithm | None,
                              transforms.IntegrityAlgorithm | None]:
    """``aes128gcm16``, ``aes256-sha256``, ``null-sha256`` (ESP) or ``sha256`` (AH).

    strongSwan keywords (RFC 7296 §3.3 transforms by their proposal names); ``-esn`` and
    ``-noesn`` are left to the caller.
    """
    words = [w for w in proposal.lower().split("-") if w not in ("esn", "noesn")]
    if protocol == "ah":
        if len(words) != 1:
            raise ConfigError(f"an AH proposal names one integrity algorithm, not '{proposal}'")
        return None, transforms.integrity(words[0])
    if not words or len(words) > 2:
        raise ConfigError(f"expected ENCRYPTION or ENCRYPTION-INTEGRITY, not '{proposal}'")
    enc = transforms.encryption(words[0])
    integ = transforms.integrity(words[1]) if len(words) == 2 else None
    return enc, integ


def demo_sa(proposal: str = "aes128gcm16", mode: str = "transport", *, protocol: str = "esp",
            family: int = 4, udp: bool = False, esn: bool = False, spi: int = 0x1001,
            replay_window: int = 32, seed: str = "ipseclab", src: str | None = None,
            dst: str | None = None) -> SecurityAssociation:
    """One SA with keys derived from ``seed``; call twice for a sender and a receiver."""
    enc, integ = parse_proposal(proposal, protocol)
    esn = esn or proposal.lower().endswith("-esn")
    a, b = ENDPOINTS[family]
    return SecurityAssociation(
        spi=spi, src=src or a, dst=dst or b, protocol=Protocol(protocol), mode=Mode(mode),
        encryption=enc, encryption_key=lab_key(enc.keymat_size, seed + "/enc") if enc else b"",
        integrity=integ, integrity_key=lab_key(integ.key_size, seed + "/auth") if integ else b"",
        replay_window=replay_window, esn=esn, encap=UdpEncap() if udp else None, insecure=True)


def demo_pair(proposal: str = "aes128gcm16", mode: str = "transport", **kw
              ) -> tuple[SecurityAssociation, SecurityAssociation]:
    """(sender, receiver): two SAs with the same keys and their own counters and windows."""
    return demo_sa(proposal, mode, **kw), demo_sa(proposal, mode, **kw)


def udp_packet(payload: bytes | int = 32, *, family: int = 4, src: str | None = None,
               dst: str | None = None, sport: int = 5000, dport: int = 6000,
               ttl: int = 64, tos: int = 0) -> bytes:
    """An IP packet carrying a UDP datagram with ``payload`` (bytes, or that many bytes)."""
    if isinstance(payload, int):
        payload = bytes(i % 256 for i in range(payload))
    a, b = HOSTS[family]
    s, d = ip.as_address(src or a), ip.as_address(dst or b)
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = ip.checksum(ip.pseudo_header(s, d, ip.PROTO_UDP, length) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    return ip.ip_header(s, d, ip.PROTO_UDP, length, tos=tos, ttl=ttl) + udp
