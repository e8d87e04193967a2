"""The crypto layer against published vectors (tests/data/vectors, copied from shared/vectors).

Every algorithm is reached the way the stack reaches it: ESP ciphers through
``encryption(kw).new(keymat)``, ICVs through ``integrity(kw).new(key)``, PRFs through
``prf(kw)``, DH through ``dh_group(kw).generate(private)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from ipseclab.crypto.dh import dh_group, dh_group_by_id
from ipseclab.crypto.kdf import (
    IkeKeySizes,
    child_keymat,
    ike_keys,
    skeyseed,
    skeyseed_rekey,
)
from ipseclab.crypto.prf import prf, prf_plus
from ipseclab.crypto.transforms import encryption, integrity
from ipseclab.errors import AuthenticationFailed, ConfigError

VECTORS = Path(__file__).parent / "data" / "vectors"


def load(name: str) -> list[dict]:
    with open(VECTORS / f"{name}.json") as f:
        return json.load(f)["vectors"]


def hx(section: dict, name: str) -> bytes:
    return bytes.fromhex(section[name])


def ids(vs: list[dict]) -> list[str]:
    return [v["id"] for v in vs]


# --- ESP ciphers ------------------------------------------------------------------------

CBC = [v for v in load("rfc3602_aes_cbc_esp") if v["id"] in ("case1", "case2", "case3", "case4")]


@pytest.mark.parametrize("v", CBC, ids=ids(CBC))
def test_rfc3602_aes_cbc(v: dict) -> None:
    i, o = v["inputs"], v["outputs"]
    cipher = encryption(f"aes{v['params']['key_bits']}").new(hx(i, "key"))
    assert cipher.encrypt(hx(i, "iv"), hx(i, "plaintext"), b"") == hx(o, "ciphertext")
    assert cipher.decrypt(hx(i, "iv"), hx(o, "ciphertext"), b"") == hx(i, "plaintext")


CTR = load("rfc3686_aes_ctr_esp")


@pytest.mark.parametrize("v", CTR, ids=ids(CTR))
def test_rfc3686_aes_ctr(v: dict) -> None:
    i, o = v["inputs"], v["outputs"]
    keymat = hx(i, "key") + hx(i, "nonce")  # RFC 3686 §5.1: the nonce is the last 4 octets
    assert keymat == hx(v["derived"], "keymat_for_esp")
    cipher = encryption(f"aes{v['params']['key_bits']}ctr").new(keymat)
    assert cipher.encrypt(hx(i, "iv"), hx(i, "plaintext"), b"") == hx(o, "ciphertext")
    assert cipher.decrypt(hx(i, "iv"), hx(o, "ciphertext"), b"") == hx(i, "plaintext")


GCM = load("rfc4106_4543_gcm_gmac_esp_mcgrew_draft")


@pytest.mark.parametrize("v", GCM, ids=ids(GCM))
def test_mcgrew_gcm_gmac(v: dict) -> None:
    p, i, o, d = v["params"], v["inputs"], v["outputs"], v["derived"]
    header = hx(i, "spi") + hx(i, "seq")  # RFC 4106 §5: SPI || Seq (64-bit with ESN)
    assert len(header) == (12 if p["esn"] else 8)
    assert hx(i, "nonce") == hx(d, "salt") + hx(d, "iv")
    iv = hx(d, "iv")
    if p["algorithm"] == "AES-GMAC-ESP":
        # RFC 4543 §3.3: AAD = SPI || Seq || IV || payload, no ciphertext.
        aad = hx(i, "aad")
        assert aad[:8] == header and aad[8:16] == iv
        payload = aad[16:]
        cipher = encryption(f"aes{p['key_bits']}gmac").new(hx(d, "keymat"))
        out = cipher.encrypt(iv, payload, header)
        assert out == payload + hx(o, "tag")
        assert header + iv + out == hx(o, "packet")
        assert cipher.decrypt(iv, out, header) == payload
        with pytest.raises(AuthenticationFailed):
            cipher.decrypt(iv, b"\x00" + out[1:], header)
        return
    assert hx(i, "aad") == header
    cipher = encryption(f"aes{p['key_bits']}gcm16").new(hx(d, "keymat"))
    out = cipher.encrypt(iv, hx(i, "plaintext"), header)
    assert out == hx(o, "ctext_tag") == hx(o, "ciphertext") + hx(o, "tag")
    assert hx(i, "spi") + hx(i, "seq")[-4:] + iv + out == hx(o, "packet")
    assert cipher.decrypt(iv, out, header) == hx(i, "plaintext")
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(iv, out, header[:-1] + bytes([header[-1] ^ 1]))
    # RFC 4106 §6: the 8- and 12-octet ICVs are the 16-octet tag truncated.
    for icv in (8, 12):
        short = encryption(f"aes{p['key_bits']}gcm{icv}").new(hx(d, "keymat"))
        sealed = short.encrypt(iv, hx(i, "plaintext"), header)
        assert sealed == hx(o, "ciphertext") + hx(o, "tag")[:icv]
        assert short.decrypt(iv, sealed, header) == hx(i, "plaintext")
        with pytest.raises(AuthenticationFailed):
            short.decrypt(iv, sealed[:-1] + bytes([sealed[-1] ^ 1]), header)


CCM = load("rfc3610_ccm_for_rfc4309")


@pytest.mark.parametrize("v", CCM, ids=ids(CCM))
def test_rfc3610_ccm_primitive(v: dict) -> None:
    """The raw CCM primitive under ESP-CCM (13-octet nonce; ESP uses 11, tested below)."""
    i, d = v["inputs"], v["derived"]
    aead = AESCCM(hx(i, "key"), tag_length=v["params"]["tag_length"])
    sealed = aead.encrypt(hx(i, "nonce"), hx(d, "plaintext"), hx(d, "aad"))
    assert hx(d, "aad") + sealed == hx(v["outputs"], "output_packet")


@pytest.mark.parametrize("icv", [8, 12, 16])
@pytest.mark.parametrize("bits", [128, 192, 256])
def test_rfc4309_ccm_nonce_is_salt_then_iv(bits: int, icv: int) -> None:
    """RFC 4309 §4: nonce = 3-octet salt (end of KEYMAT) || 8-octet IV; L = 4."""
    key = bytes(range(bits // 8))
    salt, iv, aad = b"\xa1\xb2\xc3", bytes(range(40, 48)), b"\x00\x00\x43\x21\x00\x00\x00\x07"
    plaintext = b"ESP-CCM payload with padding\x01\x02\x02\x04"
    cipher = encryption(f"aes{bits}ccm{icv}").new(key + salt)
    sealed = cipher.encrypt(iv, plaintext, aad)
    assert sealed == AESCCM(key, tag_length=icv).encrypt(salt + iv, plaintext, aad)
    assert cipher.decrypt(iv, sealed, aad) == plaintext
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(iv, sealed, aad[:-1] + b"\x08")


CHACHA = {v["id"]: v for v in load("rfc7634_chacha20_poly1305_ipsec")}


def test_rfc7634_appendix_a_esp() -> None:
    v = CHACHA["esp_example"]
    i, m, o = v["inputs"], v["intermediate"], v["outputs"]
    assert hx(i, "keymat") == hx(i, "key") + hx(i, "salt")
    assert hx(m, "aad") == hx(i, "spi") + v["params"]["seq"].to_bytes(4, "big")
    cipher = encryption("chacha20poly1305").new(hx(i, "keymat"))
    out = cipher.encrypt(hx(i, "iv"), hx(m, "plaintext"), hx(m, "aad"))
    assert out == hx(o, "ciphertext") + hx(o, "tag")
    assert cipher.decrypt(hx(i, "iv"), out, hx(m, "aad")) == hx(m, "plaintext")


def test_rfc7634_appendix_b_ike_sk_payload() -> None:
    """IKEv2 uses the same AEAD object (RFC 7634 §3): AAD = IKE header || SK payload header."""
    v = CHACHA["ikev2_example"]
    i, m, o = v["inputs"], v["intermediate"], v["outputs"]
    cipher = encryption("chacha20poly1305").new(hx(i, "key") + hx(i, "salt"))
    out = cipher.encrypt(hx(i, "iv"), hx(m, "plaintext"), hx(m, "aad"))
    assert out == hx(o, "ciphertext") + hx(o, "tag")
    assert hx(o, "encrypted_payload").endswith(hx(i, "iv") + out)


# --- Integrity and PRFs ---------------------------------------------------------------

RFC4868 = load("rfc4868_hmac_sha2_ipsec")


@pytest.mark.parametrize("v", RFC4868, ids=ids(RFC4868))
def test_rfc4868(v: dict) -> None:
    i = v.get("corrected_inputs", v["inputs"])  # AUTH512-4 is misprinted (see README)
    key, data = hx(i, "key"), hx(i, "data")
    checked = 0
    for name, value in v["outputs"].items():
        bits = name.split("_")[-1] if name.startswith("icv_") else None
        if name.startswith("prf_hmac_sha_"):
            assert prf(f"prfsha{name[-3:]}").prf(key, data).hex() == value
        elif bits is not None:
            alg = integrity(f"sha{name.split('_')[-2]}")
            assert alg.icv_size * 8 == int(bits)
            assert alg.new(key).compute(data).hex() == value
            assert alg.new(key).verify(data, bytes.fromhex(value))
        checked += 1
    assert checked == len(v["outputs"]) >= 2


def test_rfc4868_auth512_4_as_printed_is_wrong() -> None:
    v = next(x for x in RFC4868 if x["id"] == "auth512_4")
    key = hx(v["inputs"], "key")
    assert len(key) == 80
    assert prf("prfsha512").prf(key, hx(v["inputs"], "data")).hex() != \
        v["outputs"]["prf_hmac_sha_512"]


def test_rfc4868_truncated_icv_for_linux_auth() -> None:
    """``ip xfrm ... auth 'hmac(sha256)'`` ICVs are 96 bits: the RFC 4868 MAC cut shorter."""
    v = next(x for x in RFC4868 if x["id"] == "auth256_1")
    i = v["inputs"]
    short = integrity("sha256").truncated(96)
    assert short.keyword == "sha256_96" and short.icv_size == 12
    assert short.new(hx(i, "key")).compute(hx(i, "data")) == \
        hx(v["outputs"], "icv_hmac_sha_256_128")[:12]
    assert integrity("sha256").truncated(256).icv_size == 32
    for alg, too_long in (("sha256", 264), ("aesxcbc", 136), ("sha1", 168)):
        with pytest.raises(ConfigError):
            integrity(alg).truncated(too_long)


RFC4231 = load("rfc4231_hmac_sha2")


@pytest.mark.parametrize("v", RFC4231, ids=ids(RFC4231))
def test_rfc4231_prf(v: dict) -> None:
    i = v["inputs"]
    for bits in (256, 384, 512):
        expected = v["outputs"][f"hmac_sha_{bits}"]
        out = prf(f"prfsha{bits}").prf(hx(i, "key"), hx(i, "data")).hex()
        assert out[: len(expected)] == expected


XCBC = load("rfc3566_aes_xcbc_mac_96")


@pytest.mark.parametrize("v", XCBC, ids=ids(XCBC))
def test_rfc3566_aes_xcbc_mac_96(v: dict) -> None:
    i, o = v["inputs"], v["outputs"]
    mac = integrity("aesxcbc").new(hx(i, "key"))
    assert mac.full_mac(hx(i, "message")) == hx(o, "aes_xcbc_mac")
    assert mac.compute(hx(i, "message")) == hx(o, "aes_xcbc_mac_96")
    assert mac.verify(hx(i, "message"), hx(o, "aes_xcbc_mac_96"))


XCBC_PRF = load("rfc4434_aes_xcbc_prf_128")


@pytest.mark.parametrize("v", XCBC_PRF, ids=ids(XCBC_PRF))
def test_rfc4434_aes_xcbc_prf_128(v: dict) -> None:
    i = v["inputs"]
    assert prf("prfaesxcbc").prf(hx(i, "key"), hx(i, "message")) == \
        hx(v["outputs"], "prf_output")


CMAC = [v for v in load("rfc4494_aes_cmac_96") if v["id"] != "subkeys"]


@pytest.mark.parametrize("v", CMAC, ids=ids(CMAC))
def test_rfc4494_aes_cmac_96(v: dict) -> None:
    i = v["inputs"]
    mac = integrity("aescmac").new(hx(i, "key"))
    assert mac.compute(hx(i, "message")) == hx(v["outputs"], "aes_cmac_96")


CMAC_PRF = load("rfc4615_aes_cmac_prf_128")


@pytest.mark.parametrize("v", CMAC_PRF, ids=ids(CMAC_PRF))
def test_rfc4615_aes_cmac_prf_128(v: dict) -> None:
    i = v["inputs"]
    assert prf("prfaescmac").prf(hx(i, "key"), hx(i, "message")) == \
        hx(v["outputs"], "prf_output")


# --- Diffie-Hellman ---------------------------------------------------------------------

RFC5903 = load("rfc5903_ecp_groups")


@pytest.mark.parametrize("v", RFC5903, ids=ids(RFC5903))
def test_rfc5903_ecp(v: dict) -> None:
    i, o, d = v["inputs"], v["outputs"], v["derived"]
    group = dh_group_by_id(v["params"]["ike_group"])
    assert group is not None and group.keyword == "ecp" + v["params"]["curve"][4:7]
    assert group.public_size * 4 == v["params"]["component_bits"]
    mine, theirs = group.generate(hx(i, "i")), group.generate(hx(i, "r"))
    assert mine.public_bytes() == hx(o, "gix") + hx(o, "giy") == hx(d, "ke_i_data")
    assert theirs.public_bytes() == hx(d, "ke_r_data")
    assert hx(o, "ke_i_payload").endswith(mine.public_bytes())
    assert mine.exchange(theirs.public_bytes()) == hx(o, "shared_secret") == hx(o, "girx")
    assert theirs.exchange(mine.public_bytes()) == hx(o, "shared_secret")


RFC7748 = {v["id"]: v for v in load("rfc7748_x25519_x448")}


@pytest.mark.parametrize("name", ["x25519_vector1", "x25519_vector2", "x448_vector1",
                                  "x448_vector2"])
def test_rfc7748_scalar_multiplication(name: str) -> None:
    v = RFC7748[name]
    group = dh_group(v["params"]["function"])
    out = group.generate(hx(v["inputs"], "scalar")).exchange(hx(v["inputs"], "u"))
    assert out == hx(v["outputs"], "output_u")


@pytest.mark.parametrize("name", ["x25519_iter_1", "x25519_iter_1000", "x448_iter_1",
                                  "x448_iter_1000"])
def test_rfc7748_iterated(name: str) -> None:
    v = RFC7748[name]
    group = dh_group(v["params"]["function"])
    k, u = hx(v["inputs"], "k0"), hx(v["inputs"], "u0")
    for _ in range(v["params"]["iterations"]):
        k, u = group.generate(k).exchange(u), k
    assert k == hx(v["outputs"], "k")


@pytest.mark.parametrize("name", ["x25519_dh", "x448_dh"])
def test_rfc7748_dh(name: str) -> None:
    v = RFC7748[name]
    i, o = v["inputs"], v["outputs"]
    group = dh_group_by_id(v["params"]["ike_group"])
    assert group is dh_group(v["params"]["function"])
    alice, bob = group.generate(hx(i, "alice_private")), group.generate(hx(i, "bob_private"))
    assert alice.public_bytes() == hx(o, "alice_public")
    assert bob.public_bytes() == hx(o, "bob_public")
    assert alice.exchange(bob.public_bytes()) == bob.exchange(alice.public_bytes()) == \
        hx(o, "shared_secret")


RFC5114 = load("rfc5114_dh_groups_test_data")


@pytest.mark.parametrize("v", RFC5114, ids=ids(RFC5114))
def test_rfc5114(v: dict) -> None:
    i, o = v["inputs"], v["outputs"]
    group = dh_group_by_id(v["params"]["ike_group"])
    assert group is not None
    if v["params"]["kind"] == "modp":
        assert (group.p, group.g, group.q) == (  # type: ignore[attr-defined]
            int(i["p"], 16), int(i["g"], 16), int(i["q"], 16))
        a, b = group.generate(hx(i, "xA")), group.generate(hx(i, "xB"))
        size = group.public_size
        assert a.public_bytes() == int(o["yA"], 16).to_bytes(size, "big")
        assert b.public_bytes() == int(o["yB"], 16).to_bytes(size, "big")
        z = int(o["Z"], 16).to_bytes(size, "big")
    else:
        a, b = group.generate(int(i["dA"], 16)), group.generate(int(i["dB"], 16))
        n = group.public_size // 2
        coord = [int(o[k], 16).to_bytes(n, "big") for k in ("x_qA", "y_qA", "x_qB", "y_qB")]
        assert a.public_bytes() == coord[0] + coord[1]
        assert b.public_bytes() == coord[2] + coord[3]
        z = int(o["x_Z"], 16).to_bytes(n, "big")
    assert a.exchange(b.public_bytes()) == b.exchange(a.public_bytes()) == z


# --- IKEv2 key derivation (NIST CAVP via libreswan/strongSwan) ---------------------------

KDF = load("ikev2_kdf_examples")
NIST_PRF = {"PRF_HMAC_SHA1": "prfsha1", "PRF_HMAC_SHA2_256": "prfsha256",
            "PRF_HMAC_SHA2_384": "prfsha384", "PRF_HMAC_SHA2_512": "prfsha512"}


@pytest.mark.parametrize("v", KDF, ids=ids(KDF))
def test_ikev2_kdf(v: dict) -> None:
    i, o = v["inputs"], v["outputs"]
    alg = prf(NIST_PRF[v["params"]["prf"]])
    ni, nr, spi_i, spi_r = hx(i, "ni"), hx(i, "nr"), hx(i, "spi_i"), hx(i, "spi_r")
    seed = skeyseed(alg, ni, nr, hx(i, "g_ir"))
    assert seed == hx(o, "skeyseed")
    dkm = prf_plus(alg, seed, ni + nr + spi_i + spi_r, v["params"]["dkm_length"])
    assert dkm == hx(o, "dkm")
    sk_d = dkm[: alg.preferred_key_size]
    if v["params"]["dkm_length"] == 132:
        # 132 octets = SK_d, SK_ai, SK_ar, SK_pi, SK_pr of the PRF size and two 16-octet SK_e.
        sizes = IkeKeySizes(alg.preferred_key_size, alg.output_size, 16, alg.preferred_key_size)
        if sizes.total == 132:
            keys = ike_keys(alg, seed, ni, nr, spi_i, spi_r, sizes)
            assert b"".join([keys.SK_d, keys.SK_ai, keys.SK_ar, keys.SK_ei, keys.SK_er,
                             keys.SK_pi, keys.SK_pr]) == dkm
            assert keys.SK_d == sk_d and len(keys.SK_ei) == 16
    if "dkm_child_sa" in o:
        assert child_keymat(alg, sk_d, ni, nr, length=len(hx(o, "dkm_child_sa"))) == \
            hx(o, "dkm_child_sa")
    if "dkm_child_sa_dh" in o:
        assert child_keymat(alg, sk_d, ni, nr, hx(i, "g_ir_new"),
                            length=len(hx(o, "dkm_child_sa_dh"))) == hx(o, "dkm_child_sa_dh")
    if "skeyseed_rekey" in o:
        assert skeyseed_rekey(alg, sk_d, hx(i, "g_ir_new"), ni, nr) == hx(o, "skeyseed_rekey")
