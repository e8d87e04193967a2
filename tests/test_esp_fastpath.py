"""ESP's fast paths must give exactly what the general paths give (review of esp.py).

Three SAs see the same packets in the same order: the compiled path (ipsec/_espfast.c, when
built), the fused Python fast paths, and the general path of RFC 4303 §3.3/§3.4 (the same
SA with its fast paths switched off). Outputs, verdicts, counters and windows must agree.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.crypto.transforms import encryption
from ipseclab.ipsec import esp, fastpath, ip
from ipseclab.ipsec.sa import SecurityAssociation, UdpEncap
from ipseclab.ipsec.verdict import Status

FAST_ALGORITHMS = ["aes128gcm16", "aes256gcm16", "aes128gcm8", "aes192gcm12", "aes128ccm8",
                   "aes192ccm16", "chacha20poly1305"]
COMPILED = {"aes128gcm16", "aes256gcm16", "aes128gcm8", "aes192gcm12", "chacha20poly1305"}


def _sas(keyword: str, mode: str, family: int, key: bytes, window: int = 64,
         udp: bool = False) -> dict[str, SecurityAssociation]:
    """The same SA for each path: "compiled" (if built), "fused" and "general"."""
    enc = encryption(keyword)
    src, dst = ("192.0.2.1", "192.0.2.2") if family == 4 else ("2001:db8::1", "2001:db8::2")
    keymat = (key * 64)[: enc.keymat_size]

    def build() -> SecurityAssociation:
        return SecurityAssociation(spi=0x1234, src=src, dst=dst, mode=mode, encryption=enc,
                                   encryption_key=keymat, replay_window=window,
                                   encap=UdpEncap() if udp else None)
    sas = {}
    if fastpath.available():
        sas["compiled"] = build()
        assert (sas["compiled"].compiled is not None) == (keyword in COMPILED)
    with fastpath.pure_python():
        sas["fused"], general = build(), build()
    assert sas["fused"].compiled is None  # (short GCM tags have no fused path either)
    general.fast_aead = general.fast_outer4 = None  # every packet takes the general path
    sas["general"] = general
    return sas


def _inner(version: int, proto: int, payload: bytes, tos: int, df: bool) -> bytes:
    if version == 4:
        return ip.ipv4_header(IPv4Address("10.1.0.1"), IPv4Address("10.2.0.1"), proto,
                              len(payload), tos=tos, df=df) + payload
    return ip.ipv6_header(IPv6Address("fd00::1"), IPv6Address("fd00::2"), proto, len(payload),
                          traffic_class=tos) + payload


def _same(a, b) -> None:
    assert (a.status, a.spi, a.seq, a.next_header, a.payload, a.inner, a.detail) == \
        (b.status, b.spi, b.seq, b.next_header, b.payload, b.inner, b.detail)


def _agree_on(rx: dict[str, SecurityAssociation], wire: list[bytes], receive) -> None:
    """Every path gives the general path's verdict on every packet, and ends in its state."""
    for packet in wire:
        results = {path: receive(sa, packet) for path, sa in rx.items()}
        for result in results.values():
            _same(result, results["general"])
    for path, sa in rx.items():
        assert sa.counters == rx["general"].counters, path
        assert sa.replay.highest == rx["general"].replay.highest, path


packets = st.lists(st.tuples(st.sampled_from([4, 6]), st.sampled_from([6, 17, 1, 59]),
                             st.binary(max_size=80), st.integers(0, 255), st.booleans()),
                   min_size=1, max_size=6)
mutations = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255),
                               st.sampled_from(["flip", "cut", "dup", "junk"])), max_size=6)


def _mutate(valid: list[bytes], muts) -> list[bytes]:
    extra = []
    for at, value, how in muts:
        base = valid[at % len(valid)]
        if how == "flip":
            i = at % len(base)
            extra.append(base[:i] + bytes([base[i] ^ (value or 1)]) + base[i + 1 :])
        elif how == "cut":
            extra.append(base[: at % len(base)])
        elif how == "dup":
            extra.append(base)
        else:
            extra.append(base[:20] + bytes([value]) * (at % 90))
    return extra


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FAST_ALGORITHMS), st.sampled_from(["tunnel", "transport"]),
       st.sampled_from([4, 6]), st.binary(min_size=1, max_size=8), packets, mutations,
       st.sampled_from([0, 1, 3, 64]), st.booleans(), st.randoms(use_true_random=False))
def test_fast_and_general_paths_agree(keyword, mode, family, key, inners, muts, window, udp,
                                      rng: random.Random) -> None:
    tx = _sas(keyword, mode, family, key, window, udp)
    rx = _sas(keyword, mode, family, key, window, udp)
    wire = []
    for version, proto, payload, tos, df in inners:
        if mode == "transport":
            version = family  # transport mode keeps the packet's own header
        packet = _inner(version, proto, payload, tos, df)
        outs = {path: esp.encapsulate(sa, packet) for path, sa in tx.items()}
        assert len(set(outs.values())) == 1, outs
        wire.append(outs["general"])
    wire += _mutate(list(wire), muts)
    rng.shuffle(wire)  # out of order, inside and outside small windows
    _agree_on(rx, wire, esp.decapsulate)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FAST_ALGORITHMS), st.binary(min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=70)), min_size=1,
                max_size=5), mutations, st.randoms(use_true_random=False))
def test_datagram_paths_agree(keyword, key, payloads, muts, rng: random.Random) -> None:
    """protect()/unprotect(): the ESP datagram alone, as the gateway's UDP path and decode use."""
    tx = _sas(keyword, "transport", 4, key)
    rx = _sas(keyword, "transport", 4, key)
    wire = []
    for next_header, payload in payloads:
        outs = {path: esp.protect(sa, next_header, payload) for path, sa in tx.items()}
        assert len(set(outs.values())) == 1
        wire.append(outs["general"])
    wire += _mutate(list(wire), muts)
    rng.shuffle(wire)
    _agree_on(rx, wire, esp.unprotect)


def _gcm_sa() -> SecurityAssociation:
    return SecurityAssociation(spi=0x1000, src="192.0.2.1", dst="192.0.2.2", mode="tunnel",
                               encryption=encryption("aes128gcm16"), encryption_key=bytes(20))


def test_empty_inner_packet_in_tunnel_mode_is_malformed_not_an_exception() -> None:
    """A peer may send next header 4 with zero octets of payload: a verdict, not IndexError."""
    for fast in (True, False):
        tx, rx = _gcm_sa(), _gcm_sa()
        if not fast:
            rx.fast_aead = rx.compiled = None
        result = esp.decapsulate(rx, esp.outer_packet(tx, esp.protect(tx, ip.PROTO_IPV4, b"")))
        assert result.status is Status.MALFORMED
        assert result.seq == 1


def test_authentic_datagram_without_trailer_is_malformed_on_the_fast_path() -> None:
    """An ESP datagram whose AEAD plaintext is empty (valid tag), padded out at IP level."""
    tx, rx = _gcm_sa(), _gcm_sa()
    header = tx.spi_bytes + (1).to_bytes(4, "big")
    iv = (1).to_bytes(8, "big")
    body = AESGCM(bytes(16)).encrypt(bytes(4) + iv, b"", header)
    packet = tx.outer.build(len(header + iv + body)) + header + iv + body + bytes(20)
    result = esp.decapsulate(rx, packet)
    assert result.status is Status.MALFORMED


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20 * 0xFFFF))
def test_ipv4_checksum_of_a_sum_is_the_folded_complement(word_sum: int) -> None:
    """-sum mod 0xFFFF is what folding the carries and complementing gives (RFC 1071)."""
    folded = word_sum
    while folded >> 16:
        folded = (folded & 0xFFFF) + (folded >> 16)
    assert ip.ipv4_checksum(word_sum) == ~folded & 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF - 20), st.integers(0, 255), st.integers(0, 0xFFFF),
       st.booleans(), st.ip_addresses(v=4), st.ip_addresses(v=4))
def test_outer_ipv4_header_checksum_verifies(length, tos, ident, df, src, dst) -> None:
    """The tunnel's precomputed header sums to all ones, as a receiver checks it."""
    header = ip.OuterHeader(src, dst, ip.PROTO_ESP).build(length, tos, ident, df)
    assert len(header) == 20 and ip.checksum(header) == 0
    assert header[1] == tos and int.from_bytes(header[2:4], "big") == 20 + length
    assert bool(header[6] & 0x40) == df


def test_fast_path_outer_header_matches_scapy() -> None:
    """Scapy recomputes length and checksum of what the fused path wrote and finds them equal."""
    from scapy.layers.inet import IP

    tx = _gcm_sa()
    inner = _inner(4, 17, bytes(100), 0x2E, True)
    for _ in range(3):
        wire = esp.encapsulate(tx, inner)
        rebuilt = IP(wire)
        del rebuilt.chksum, rebuilt.len
        assert bytes(rebuilt) == wire
        assert rebuilt.tos == 0x2E and rebuilt.flags.DF and rebuilt.id == tx.ident
