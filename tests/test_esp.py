"""ESP (RFC 4303): published packets, round trips in every mode, scapy interop, bad input."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.ipsec import ESP
from scapy.layers.ipsec import SecurityAssociation as ScapySA
from scapy.packet import Raw

from conftest import sa_pair, vectors
from ipseclab.crypto import transforms
from ipseclab.ipsec import esp
from ipseclab.ipsec.sa import SecurityAssociation, UdpEncap
from ipseclab.ipsec.verdict import SequenceOverflow, Status

V4 = bytes(IP(src="192.0.2.1", dst="192.0.2.2", ttl=9) / UDP(sport=1, dport=50000)
           / Raw(b"hello ipseclab" * 3))
V6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
           / UDP(sport=1, dport=50000) / Raw(b"hello ipseclab" * 3))
ALL_ENCRYPTION = sorted(transforms.ENCRYPTION)


def _integrity_for(enc: str) -> str | None:
    return None if transforms.ENCRYPTION[enc].aead else "sha256"


# --- published vectors -------------------------------------------------------------------

@pytest.mark.parametrize("case", [v for v in vectors("rfc4106_4543_gcm_gmac_esp_mcgrew_draft")
                                  if v["params"]["spi"] >= 256], ids=lambda v: v["id"])
def test_mcgrew_gcm_gmac_packets_decrypt(case: dict) -> None:
    p = case["params"]
    bits = p["key_bits"]
    keyword = f"aes{bits}gmac" if p["algorithm"] == "AES-GMAC-ESP" else f"aes{bits}gcm16"
    sa = SecurityAssociation(spi=p["spi"], src="192.0.2.1", dst="192.0.2.2",
                             encryption=transforms.encryption(keyword),
                             encryption_key=bytes.fromhex(case["derived"]["keymat"]),
                             esn=p["esn"], replay_window=64)
    if p["seq"] > 1:
        sa.replay.update(p["seq"] - 1)  # position the window so the ESN high bits are known
    result = esp.unprotect(sa, bytes.fromhex(case["outputs"]["packet"]))
    assert result.status is Status.OK, result.detail
    assert result.seq == p["seq"]
    plaintext = bytes.fromhex(case["inputs"]["plaintext"])
    if p["algorithm"] == "AES-GMAC-ESP":
        # GMAC: the payload travels in the clear and is all of the AAD after SPI, seq, IV.
        aad = bytes.fromhex(case["inputs"]["aad"])
        plaintext = aad[8 + 8:] if not p["esn"] else aad[12 + 8:]
    pad = plaintext[-2]
    assert result.payload == plaintext[: len(plaintext) - 2 - pad]
    assert result.next_header == plaintext[-1]


@pytest.mark.parametrize("case", [v for v in vectors("rfc3602_aes_cbc_esp")
                                  if "ip_packet" in v.get("derived", {})], ids=lambda v: v["id"])
def test_rfc3602_esp_packets_decrypt(case: dict) -> None:
    p = case["params"]
    sa = SecurityAssociation(spi=p["spi"], src=p["src"], dst=p["dst"], mode=p["mode"],
                             encryption=transforms.encryption("aes128"),
                             encryption_key=bytes.fromhex(case["inputs"]["key"]),
                             insecure=True)  # these examples have no ICV
    result = esp.decapsulate(sa, bytes.fromhex(case["derived"]["ip_packet"]))
    assert result.status is Status.OK, result.detail
    assert result.seq == p["seq"]
    original = bytes.fromhex(case["inputs"]["original_ip_header"]
                             + case["inputs"]["original_data"])
    if p["mode"] == "tunnel":
        assert result.payload == result.inner == original
    else:
        assert result.payload == bytes.fromhex(case["inputs"]["original_data"])
        assert result.inner[20:] == original[20:]
        assert IP(result.inner).proto == p["next_header"]


def test_rfc7634_chacha20_poly1305_packet() -> None:
    (case,) = [v for v in vectors("rfc7634_chacha20_poly1305_ipsec") if v["id"] == "esp_example"]
    p, inputs = case["params"], case["inputs"]
    sa = SecurityAssociation(spi=p["spi"], src=p["outer_src"], dst=p["outer_dst"], mode="tunnel",
                             encryption=transforms.encryption("chacha20poly1305"),
                             encryption_key=bytes.fromhex(inputs["keymat"]))
    result = esp.decapsulate(sa, bytes.fromhex(case["outputs"]["esp_ip_packet"]))
    assert result.status is Status.OK, result.detail
    assert result.inner == bytes.fromhex(inputs["source_packet"])


# --- round trips -------------------------------------------------------------------------

@pytest.mark.parametrize("enc", ALL_ENCRYPTION)
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_round_trip_every_algorithm(enc: str, mode: str, v6: bool) -> None:
    out, inb = sa_pair(enc, _integrity_for(enc), mode=mode, v6=v6)
    packet = V6 if v6 else V4
    for seq in (1, 2, 3):
        wire = esp.encapsulate(out, packet)
        assert wire != packet
        result = esp.decapsulate(inb, wire)
        assert result.status is Status.OK, result.detail
        assert result.seq == seq
        assert result.inner == packet
    assert esp.decapsulate(inb, wire).status is Status.REPLAY


@pytest.mark.parametrize("integ", sorted(transforms.INTEGRITY))
@pytest.mark.parametrize("esn", [False, True])
def test_round_trip_every_integrity_algorithm(integ: str, esn: bool) -> None:
    out, inb = sa_pair("aes128", integ, mode="tunnel", esn=esn)
    wire = esp.encapsulate(out, V4)
    padded = -(-(len(V4) + 2) // 16) * 16
    assert len(wire) == 20 + 8 + 16 + padded + transforms.INTEGRITY[integ].icv_size
    assert esp.decapsulate(inb, wire).inner == V4


@pytest.mark.parametrize("enc", ["aes128gcm16", "aes256", "chacha20poly1305"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_udp_encapsulation_round_trip(enc: str, v6: bool) -> None:
    out, inb = sa_pair(enc, _integrity_for(enc), mode="tunnel", v6=v6, encap=UdpEncap())
    wire = esp.encapsulate(out, V6 if v6 else V4)
    outer = IPv6(wire) if v6 else IP(wire)
    assert outer[UDP].sport == outer[UDP].dport == 4500
    assert esp.decapsulate(inb, wire).inner == (V6 if v6 else V4)


def test_esn_covers_high_bits_and_crosses_the_32_bit_boundary() -> None:
    out, inb = sa_pair("aes128", "sha256", esn=True, replay_window=128)
    out.seq = inb_seq = 2**32 - 3
    inb.replay.update(inb_seq)
    seqs = []
    for _ in range(6):
        result = esp.decapsulate(inb, esp.encapsulate(out, V4))
        assert result.status is Status.OK
        seqs.append(result.seq)
    assert seqs == list(range(2**32 - 2, 2**32 + 4))


def test_esn_mismatch_fails_the_icv() -> None:
    """The high half is not sent, so a receiver with another idea of it rejects the packet."""
    out, inb = sa_pair("aes128gcm16", None, esn=True)
    out.seq = 2**32 + 10
    assert esp.decapsulate(inb, esp.encapsulate(out, V4)).status is Status.AUTH_FAILED


def test_sequence_overflow_without_esn_is_refused() -> None:
    out, _ = sa_pair("aes128gcm16", None)
    out.seq = 2**32 - 1
    with pytest.raises(SequenceOverflow):
        esp.encapsulate(out, V4)


def test_tfc_padding_hides_length_and_is_stripped() -> None:
    out, inb = sa_pair("aes128gcm16", None, mode="tunnel", tfc_padding=1000)
    wire = esp.encapsulate(out, V4)
    assert len(wire) > 1000
    assert esp.decapsulate(inb, wire).inner == V4


def test_dummy_packet_is_recognised_and_dropped() -> None:
    out, inb = sa_pair("aes128gcm16", None, mode="tunnel")
    datagram = esp.protect(out, 59, os.urandom(40))
    result = esp.unprotect(inb, datagram)
    assert result.status is Status.DUMMY
    assert inb.counters.dummy == 1 and inb.counters.packets == 0


def test_wrong_padding_is_reported() -> None:
    out, inb = sa_pair("aes128", "sha256", mode="tunnel")
    # Build a datagram whose padding bytes are not 1, 2, 3, ... but whose ICV is right.
    iv = os.urandom(16)
    pad = -(len(V4) + 2) % 16
    plaintext = V4 + bytes([9] * pad) + bytes((pad, 4))
    body = (0x1000).to_bytes(4, "big") + (1).to_bytes(4, "big") + iv
    body += out.cipher.encrypt(iv, plaintext, b"")
    datagram = body + out.mac.compute(body)
    result = esp.unprotect(inb, datagram)
    assert result.status is Status.BAD_PADDING


def test_tampering_is_detected_before_decryption() -> None:
    out, inb = sa_pair("aes128", "sha1", mode="tunnel")
    wire = bytearray(esp.encapsulate(out, V4))
    wire[40] ^= 0x01
    result = esp.decapsulate(inb, bytes(wire))
    assert result.status is Status.AUTH_FAILED
    assert inb.counters.auth_failed == 1
    assert inb.replay.highest == 0  # a forged packet never moves the window


def test_without_integrity_a_bit_flip_goes_unnoticed() -> None:
    """Why ESP without integrity needs the insecure flag (RFC 4303 §1)."""
    with pytest.raises(Exception, match="bit-flipping"):
        sa_pair("aes128", None)
    out, inb = sa_pair("aes128", None, mode="tunnel", insecure=True)
    wire = bytearray(esp.encapsulate(out, V4))
    wire[20 + 8 + 8] ^= 0x01  # IV byte 8 flips byte 8 of the inner packet: its TTL
    result = esp.decapsulate(inb, bytes(wire))
    assert result.status is Status.OK
    assert result.inner[8] == V4[8] ^ 0x01 and result.inner[9:] == V4[9:]


# --- interop with scapy's implementation --------------------------------------------------

# scapy 2.8 cannot check a truncated GCM tag (it hands it to AESGCM, which wants 16 octets);
# aes128gcm8 is checked against tshark instead.
SCAPY_NAMES = {
    "aes128": ("AES-CBC", None), "aes256": ("AES-CBC", None), "aes128ctr": ("AES-CTR", None),
    "aes128gcm16": ("AES-GCM", 16), "aes256gcm16": ("AES-GCM", 16),
    "aes128ccm16": ("AES-CCM", 16), "aes128ccm8": ("AES-CCM", 8),
    "chacha20poly1305": ("CHACHA20-POLY1305", 16), "aes128gmac": ("AES-NULL-GMAC", 16),
    "3des": ("3DES", None), "null": ("NULL", None),
}
SCAPY_AUTH = {"sha1": "HMAC-SHA1-96", "sha256": "SHA2-256-128", "md5": "HMAC-MD5-96",
              "sha512": "SHA2-512-256", "aescmac": "AES-CMAC-96"}


@pytest.mark.parametrize("enc", sorted(SCAPY_NAMES))
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
def test_scapy_decrypts_ours_and_we_decrypt_scapys(enc: str, mode: str) -> None:
    integ = None if transforms.ENCRYPTION[enc].aead else "sha256"
    ours, theirs_in = sa_pair(enc, integ, mode=mode)
    name, icv = SCAPY_NAMES[enc]
    tunnel = IP(src=str(ours.src), dst=str(ours.dst)) if mode == "tunnel" else None
    scapy_sa = ScapySA(ESP, spi=ours.spi, crypt_algo=name, crypt_key=ours.encryption_key,
                       crypt_icv_size=icv, auth_algo=SCAPY_AUTH.get(integ, "NULL"),
                       auth_key=ours.integrity_key or None, tunnel_header=tunnel)
    decrypted = scapy_sa.decrypt(IP(esp.encapsulate(ours, V4)))
    assert bytes(decrypted)[20:] == V4[20:]
    assert bytes(decrypted[UDP].payload) == bytes(IP(V4)[UDP].payload)
    result = esp.decapsulate(theirs_in, bytes(scapy_sa.encrypt(IP(V4))))
    assert result.status is Status.OK, result.detail
    assert result.inner[20:] == V4[20:]


@pytest.mark.parametrize("integ", sorted(SCAPY_AUTH))
def test_scapy_integrity_interop(integ: str) -> None:
    ours, inb = sa_pair("aes128", integ, mode="tunnel")
    scapy_sa = ScapySA(ESP, spi=ours.spi, crypt_algo="AES-CBC", crypt_key=ours.encryption_key,
                       auth_algo=SCAPY_AUTH[integ], auth_key=ours.integrity_key,
                       tunnel_header=IP(src=str(ours.src), dst=str(ours.dst)))
    assert bytes(scapy_sa.decrypt(IP(esp.encapsulate(ours, V4)))) == V4
    assert esp.decapsulate(inb, bytes(scapy_sa.encrypt(IP(V4)))).inner == V4


# --- bad input ---------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["aes128gcm16", "aes128", "null", "aes128ccm8"]))
def test_random_datagrams_give_a_verdict(data: bytes, enc: str) -> None:
    _, inb = sa_pair(enc, _integrity_for(enc), mode="tunnel")
    result = esp.unprotect(inb, data)
    assert result.status in set(Status)
    assert result.status is not Status.OK or data  # an empty datagram is never OK


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_packets_never_raise(data: st.DataObject) -> None:
    enc = data.draw(st.sampled_from(["aes128gcm16", "aes128", "chacha20poly1305"]))
    out, inb = sa_pair(enc, _integrity_for(enc), mode="tunnel")
    wire = bytearray(esp.encapsulate(out, V4))
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "flip":
        pos = data.draw(st.integers(20, len(wire) - 1))
        wire[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        wire = wire[: data.draw(st.integers(0, len(wire) - 1))]
    else:
        wire += data.draw(st.binary(min_size=1, max_size=32))
    result = esp.decapsulate(inb, bytes(wire))
    assert result.status is not Status.OK or bytes(wire[20:]) == esp.encapsulate(out, V4)[20:] \
        or kind == "extend"


def test_icmp_in_transport_mode_keeps_the_original_header() -> None:
    packet = bytes(IP(src="192.0.2.1", dst="192.0.2.2", id=77, ttl=33) / ICMP() / Raw(b"x" * 20))
    out, inb = sa_pair("aes128gcm16", None)
    wire = esp.encapsulate(out, packet)
    assert IP(wire).proto == 50 and IP(wire).id == 77
    assert esp.decapsulate(inb, wire).inner == packet


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 65535), st.booleans(), st.integers(0, 65000),
       st.ip_addresses(v=4), st.ip_addresses(v=4))
def test_outer_header_template_equals_a_fresh_header(tos, ident, df, length, src, dst) -> None:
    from ipseclab.ipsec import ip

    fresh = ip.ipv4_header(src, dst, 50, length, tos=tos, ident=ident, df=df)
    assert ip.OuterHeader(src, dst, 50).build(length, tos, ident, df) == fresh
    assert ip.checksum(fresh) == 0
