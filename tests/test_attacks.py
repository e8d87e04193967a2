"""The attack library: the crypto and packet arithmetic without root, and every attack for
real on the lab (root): it succeeds against the weak configuration and fails against the
recommended one, with the gateway counters saying why."""

from __future__ import annotations

import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from ipseclab.attacks import ATTACKS, bitflip, gcm_nonce_reuse, gf128, inet, sweet32
from ipseclab.crypto import transforms
from ipseclab.ipsec import esp, ip
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.verdict import Status

# --- GF(2^128) ---------------------------------------------------------------------------------


def _aes_block(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def test_block_conversion_puts_the_first_bit_at_x0() -> None:
    assert gf128.from_block(b"\x80" + bytes(15)) == 1
    assert gf128.to_block(2) == b"\x40" + bytes(15)
    x = random.Random(1).getrandbits(128)
    assert gf128.from_block(gf128.to_block(x)) == x


def test_field_inverse_and_reduction() -> None:
    rng = random.Random(2)
    for _ in range(5):
        a = rng.getrandbits(128) or 1
        assert gf128.mul(a, gf128.inverse(a)) == 1
    # x^127 * x = x^128 = x^7 + x^2 + x + 1
    assert gf128.mul(1 << 127, 2) == 0x87


def test_ghash_and_tag_match_aes_gcm() -> None:
    key, nonce = os.urandom(16), os.urandom(12)
    aad, plaintext = os.urandom(8), os.urandom(45)
    out = AESGCM(key).encrypt(nonce, plaintext, aad)
    h = gf128.from_block(_aes_block(key, bytes(16)))
    mask = gf128.from_block(_aes_block(key, nonce + b"\0\0\0\1"))
    assert gf128.to_block(gf128.ghash(h, aad, out[:-16]) ^ mask) == out[-16:]
    assert gf128.evaluate(gf128.ghash_poly(aad, out[:-16]), h) == gf128.ghash(h, aad, out[:-16])


def test_roots_finds_exactly_the_linear_factors() -> None:
    rng = random.Random(3)
    wanted = sorted(rng.getrandbits(128) for _ in range(3))
    f = [1]
    for r in wanted:
        f = gf128.pmul(f, [r, 1])
    # times X^2 + X + c with no root (Tr(c) = 1 makes it irreducible): pick c by trial
    while True:
        c = rng.getrandbits(128)
        quad = [c, 1, 1]
        if not gf128.roots(quad):
            break
    assert gf128.roots(gf128.pmul(f, quad)) == wanted


def test_nonce_reuse_polynomial_has_h_as_root() -> None:
    key, nonce, aad = os.urandom(16), os.urandom(12), os.urandom(8)
    c1 = AESGCM(key).encrypt(nonce, os.urandom(60), aad)
    c2 = AESGCM(key).encrypt(nonce, os.urandom(33), aad)
    f = gf128.nonce_reuse_poly((aad, c1[:-16], c1[-16:]), (aad, c2[:-16], c2[-16:]))
    assert gf128.from_block(_aes_block(key, bytes(16))) in gf128.roots(f)


# --- checksums and IV flips --------------------------------------------------------------------


@given(st.binary(min_size=4, max_size=64).filter(lambda b: len(b) % 2 == 0),
       st.data())
def test_compensate_keeps_the_ones_complement_sum(old: bytes, data) -> None:
    new = bytearray(data.draw(st.binary(min_size=len(old), max_size=len(old))))
    at = data.draw(st.integers(0, len(old) // 2 - 1)) * 2
    new[at:at + 2] = old[at:at + 2]
    fixed = inet.compensate(old, bytes(new), at)
    assert inet.ones_sum(fixed) % 0xFFFF == inet.ones_sum(old) % 0xFFFF
    assert fixed[:at] == new[:at] and fixed[at + 2:] == new[at + 2:]


def test_flip_iv_changes_only_the_chosen_plaintext_bits() -> None:
    iv, known = os.urandom(16), os.urandom(16)
    wanted = bytes(known[:4]) + b"ABCD" + known[8:]
    assert inet.xor(inet.flip_iv(iv, known, wanted), iv) == inet.xor(known, wanted)


def _cbc_sas(integrity: str | None):
    enc = transforms.encryption("aes128")
    integ = transforms.integrity(integrity) if integrity else None
    args = dict(spi=0x5001, src="192.0.2.1", dst="198.51.100.2", mode="tunnel", encryption=enc,
                encryption_key=os.urandom(16), integrity=integ,
                integrity_key=os.urandom(integ.key_size) if integ else b"",
                insecure=integ is None)
    return SecurityAssociation(**args), SecurityAssociation(**args)


def _udp_packet(data: bytes) -> bytes:
    udp = (40000).to_bytes(2, "big") + (8082).to_bytes(2, "big") \
        + (8 + len(data)).to_bytes(2, "big") + b"\0\0" + data
    header = bytearray(ip.ip_header(ip.as_address("10.1.0.10"), ip.as_address("10.2.0.10"),
                                    17, len(udp)))
    header[8] = 63
    header[10:12] = b"\0\0"
    header[10:12] = inet.checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + udp


def test_bitflip_rewrites_source_and_protocol_with_a_valid_checksum() -> None:
    out, inn = _cbc_sas(None)
    wire = esp.encapsulate(out, _udp_packet(b"secret"))
    plan = bitflip.plan_redirect(63, 17, "10.1.0.10")
    result = esp.decapsulate(inn, bitflip.forge(wire, plan))
    assert result.status is Status.OK
    inner = result.inner
    assert inet.ipv4_header_ok(inner[:20])
    assert str(ip.parse_header(inner).src) == plan.source
    assert inner[9] == plan.protocol and inner[9] not in (6, 17) and inner[8] == plan.ttl
    assert inner[28:] == b"secret"


def test_bitflip_is_an_icv_failure_with_integrity() -> None:
    out, inn = _cbc_sas("sha256")
    wire = esp.encapsulate(out, _udp_packet(b"secret"))
    forged = bitflip.forge(wire, bitflip.plan_redirect(63, 17, "10.1.0.10"))
    assert esp.decapsulate(inn, forged).status is Status.AUTH_FAILED
    assert inn.counters.auth_failed == 1


def _transport_udp(data: bytes, sport: int, dport: int) -> bytes:
    """gw1 -> gw2 UDP with a real checksum (RFC 768: over the pseudo-header too)."""
    src, dst = ip.as_address("192.0.2.1"), ip.as_address("198.51.100.2")
    length = 8 + len(data)
    pseudo = src.packed + dst.packed + b"\0\x11" + length.to_bytes(2, "big")
    head = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + length.to_bytes(2, "big")
    check = inet.checksum(pseudo + head + b"\0\0" + data)
    return ip.ip_header(src, dst, 17, length) + head + check.to_bytes(2, "big") + data


def _udp_checksum_ok(packet: bytes) -> bool:
    length = int.from_bytes(packet[24:26], "big")
    pseudo = packet[12:20] + b"\0\x11" + length.to_bytes(2, "big")
    return inet.ones_sum(pseudo + packet[20:20 + length]) == 0xFFFF


@pytest.mark.parametrize("integrity", [None, "sha256"])
def test_field_flip_changes_the_amount_and_keeps_the_udp_checksum(integrity) -> None:
    enc = transforms.encryption("aes128")
    integ = transforms.integrity(integrity) if integrity else None
    args = dict(spi=0x7001, src="192.0.2.1", dst="198.51.100.2", mode="transport",
                encryption=enc, encryption_key=os.urandom(16), integrity=integ,
                integrity_key=os.urandom(32) if integ else b"", insecure=integ is None)
    out, inn = SecurityAssociation(**args), SecurityAssociation(**args)
    message = bitflip.FIELD_MESSAGE
    packet = _transport_udp(message, bitflip.FIELD_SPORT, bitflip.FIELD_PORT)
    assert _udp_checksum_ok(packet)
    flip = bitflip.plan_field(message, bitflip.FIELD_OLD, bitflip.FIELD_NEW,
                              bitflip.FIELD_SPORT, bitflip.FIELD_PORT)
    assert inet.xor(flip.known, flip.wanted)[6:8] == b"\0\0"  # the checksum is not touched
    result = esp.decapsulate(inn, bitflip.forge(esp.encapsulate(out, packet), flip))
    if integrity:
        assert result.status is Status.AUTH_FAILED and inn.counters.auth_failed == 1
        return
    assert result.status is Status.OK
    inner = result.inner
    assert inner[28:] == message.replace(b"PAY 0100", b"PAY 9100")
    assert int.from_bytes(inner[20:22], "big") == flip.source_port != bitflip.FIELD_SPORT
    assert _udp_checksum_ok(inner)  # the receiver's kernel accepts it


def test_plan_field_refuses_a_field_outside_the_first_block() -> None:
    with pytest.raises(ValueError):
        bitflip.plan_field(b"PAY 0100 EUR", b"EUR", b"USD", 1, 2)


def test_gcm_nonce_reuse_in_the_core_recovers_h_and_forges() -> None:
    enc = transforms.encryption("aes128gcm16")
    key = os.urandom(20)

    def sa() -> SecurityAssociation:
        return SecurityAssociation(spi=0x5001, src="192.0.2.1", dst="198.51.100.2",
                                   mode="tunnel", encryption=enc, encryption_key=key,
                                   replay_window=64)

    before, after, receiver = sa(), sa(), sa()  # a restart: the same key, seq from 1 again
    known = gcm_nonce_reuse.KNOWN
    wires = [esp.encapsulate(before, _udp_packet(m)) for m in known]
    wires += [esp.encapsulate(after, _udp_packet(m)) for m in gcm_nonce_reuse.SECRETS]
    pairs = gcm_nonce_reuse.pairs(wires)
    assert len(pairs) == 2
    secret = gcm_nonce_reuse.recover_plaintext(*pairs[0], known[0])
    assert secret.startswith(gcm_nonce_reuse.SECRETS[0])
    (h,) = gcm_nonce_reuse.recover_h(pairs)
    assert gf128.to_block(h) == _aes_block(key[:16], bytes(16))
    forged = gcm_nonce_reuse.forge(pairs[0][0], h, known[0], gcm_nonce_reuse.FORGED, 1000)
    result = esp.decapsulate(receiver, forged)
    assert result.status is Status.OK
    data = result.inner[28:]
    assert data[:-2] == gcm_nonce_reuse.FORGED[:-2]
    assert inet.ones_sum(data) % 0xFFFF == inet.ones_sum(known[0]) % 0xFFFF


def test_sweet32_numbers() -> None:
    half = sweet32.bytes_for_probability(0.5, 64)
    assert 30 * 2**30 < half < 40 * 2**30  # ~2^32 blocks of 8 bytes
    assert sweet32.collision_probability(half, 64) == pytest.approx(0.5)
    assert sweet32.collision_probability(2**40, 128) < 1e-15
    assert sweet32.count_collisions([b"abc1", b"abc2", b"abd3", b"abc4"]) == 3


def test_registry_names_modules_with_run_weak_and_recommended() -> None:
    for name, info in ATTACKS.items():
        module = info.load()
        assert name == module.NAME and callable(module.run)
        assert module.WEAK and module.RECOMMENDED


# --- on the lab --------------------------------------------------------------------------------



@pytest.mark.parametrize("config", ["weak", "ah"])
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_esp_null_reads_the_secret(config: str, tmp_path) -> None:
    from ipseclab.attacks import esp_null

    result = esp_null.run(None, config, tmp_path)
    assert result.succeeded, result.report()
    assert esp_null.SECRET.decode() in result.details["learned"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_esp_null_fails_against_gcm(tmp_path) -> None:
    from ipseclab.attacks import esp_null

    result = esp_null.run(None, "recommended", tmp_path)
    assert not result.succeeded and result.details["captured"] >= 1
    assert result.details["learned"] == [] and result.details["delivered"] == 1


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_bitflip(tmp_path) -> None:
    weak = bitflip.run(None, "weak", tmp_path / "weak")
    assert weak.succeeded, weak.report()
    assert bitflip.SECRET.decode() in weak.details["leaked"][0]
    # transport mode: gw2's service acted on the changed amount
    field = weak.details["field"]
    assert field["received"] == ["PAY 9100 EUR to acct 0815 ref 7731"]
    assert field["source_ports"] == [field["compensating_source_port"]]
    fixed = bitflip.run(None, "recommended", tmp_path / "recommended")
    assert not fixed.succeeded and fixed.details["leaked"] == []
    assert fixed.details["field"]["received"] == [] and fixed.details["field"]["held"] == 1
    # one ICV failure on each of gw2's inbound SAs: the tunnel's and the transport one
    failed = {k.split()[2]: c["auth_failed"] for k, c in fixed.counters.items()}
    assert failed == {"0x00005001": 1, "0x00007001": 1}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_replay(tmp_path) -> None:
    from ipseclab.attacks import replay

    weak = replay.run(None, "weak", tmp_path / "weak")
    assert weak.succeeded and weak.details["executed"] == 3, weak.report()
    fixed = replay.run(None, "recommended", tmp_path / "recommended")
    assert not fixed.succeeded and fixed.details["executed"] == 1
    assert sum(c["replay"] for c in fixed.counters.values()) == 2


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_gcm_nonce_reuse(tmp_path) -> None:
    weak = gcm_nonce_reuse.run(None, "weak", tmp_path / "weak")
    assert weak.succeeded, weak.report()
    # H = AES_K(0^128) for the weak configuration's gw1 -> gw2 key (a1 * 16)
    assert weak.details["h"] == _aes_block(b"\xa1" * 16, bytes(16)).hex()
    assert weak.details["recovered"][0] == gcm_nonce_reuse.SECRETS[0].decode()
    assert weak.details["forged_delivered"]
    fixed = gcm_nonce_reuse.run(None, "recommended", tmp_path / "recommended")
    assert not fixed.succeeded and not fixed.details["forged_delivered"]
    assert fixed.details["recovered"][0] != gcm_nonce_reuse.SECRETS[0].decode()
    assert sum(c["auth_failed"] for c in fixed.counters.values()) == 1


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_traffic_analysis(tmp_path) -> None:
    from ipseclab.attacks import traffic_analysis

    weak = traffic_analysis.run(None, "weak", tmp_path / "weak")
    assert weak.succeeded, weak.report()
    # from mallory's own captures of the two modes on the lab, not from the core
    transport, tunnel = (weak.details["endpoints"][m] for m in ("transport", "tunnel"))
    assert transport["source"] == tunnel["source"] == "capture"
    assert (transport["outer_src"], transport["outer_dst"]) == ("10.1.0.10", "10.2.0.10")
    assert (tunnel["outer_src"], tunnel["outer_dst"]) == ("192.0.2.1", "198.51.100.2")
    assert transport["protocol"] == tunnel["protocol"] == "50"
    assert int(tunnel["length"]) - int(transport["length"]) == 20  # the inner IPv4 header
    fixed = traffic_analysis.run(None, "recommended", tmp_path / "recommended")
    assert not fixed.succeeded
    assert len({w for _, w in fixed.details["points"]}) == 1


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_sweet32(tmp_path) -> None:
    weak = sweet32.run(None, "weak", tmp_path / "weak")
    assert weak.succeeded, weak.report()
    assert weak.details["block_bits"] == 64 and weak.details["collisions_24bit"] > 0
    fixed = sweet32.run(None, "recommended", tmp_path / "recommended")
    assert not fixed.succeeded and fixed.details["probability_at_1TiB"] < 1e-15
