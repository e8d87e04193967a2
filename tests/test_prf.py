"""PRF registry, prf+ limits and the RFC 7296 §2.14 rules the vectors do not reach."""

from __future__ import annotations

import pytest

from ipseclab.crypto.kdf import IkeKeySizes, child_keymat, ike_keys, skeyseed
from ipseclab.crypto.prf import PRF, prf, prf_by_id, prf_plus
from ipseclab.crypto.transforms import encryption, integrity
from ipseclab.errors import IpsecLabError, UnknownAlgorithm


def test_lookup() -> None:
    assert prf("PRFSHA256") is prf_by_id(5)
    assert prf("prfsha2_512") is PRF["prfsha512"]
    assert prf_by_id(3) is None  # PRF_TIGER: not implemented
    with pytest.raises(UnknownAlgorithm, match="did you mean prfsha256"):
        prf("prfsha265")


@pytest.mark.parametrize("keyword", list(PRF))
def test_prf_plus_is_a_chain_of_prf_blocks(keyword: str) -> None:
    alg = prf(keyword)
    key, seed = b"k" * alg.preferred_key_size, b"seed"
    t1 = alg.prf(key, seed + b"\x01")
    t2 = alg.prf(key, t1 + seed + b"\x02")
    assert prf_plus(alg, key, seed, 2 * alg.output_size - 1) == (t1 + t2)[:-1]
    assert len(prf_plus(alg, key, seed, 255 * alg.output_size)) == 255 * alg.output_size
    with pytest.raises(IpsecLabError, match="at most"):
        prf_plus(alg, key, seed, 255 * alg.output_size + 1)


@pytest.mark.parametrize("keyword", ["prfaesxcbc", "prfaescmac"])
def test_fixed_key_prf_skeyseed_uses_64_bits_of_each_nonce(keyword: str) -> None:
    alg = prf(keyword)
    ni, nr, g_ir = bytes(range(32)), bytes(range(100, 132)), b"\x55" * 256
    assert skeyseed(alg, ni, nr, g_ir) == alg.prf(ni[:8] + nr[:8], g_ir)
    assert skeyseed(alg, ni, nr, g_ir) != alg.prf(ni + nr, g_ir)


def test_hmac_prf_skeyseed_uses_whole_nonces() -> None:
    alg = prf("prfsha256")
    ni, nr = bytes(range(32)), bytes(range(100, 132))
    assert skeyseed(alg, ni, nr, b"g") == alg.prf(ni + nr, b"g")


def test_xcbc_and_cmac_key_rules_differ_for_short_keys() -> None:
    """RFC 4434 pads a short key with zeros; RFC 4615 runs it through AES-CMAC."""
    short = bytes(range(10))
    xcbc, cmac = prf("prfaesxcbc"), prf("prfaescmac")
    assert xcbc.prf(short, b"m") == xcbc.prf(short + bytes(6), b"m")
    assert cmac.prf(short, b"m") == cmac.prf(cmac.prf(bytes(16), short), b"m")
    assert cmac.prf(short, b"m") != cmac.prf(short + bytes(6), b"m")


def test_ike_keys_sizes_for_aead_and_classic() -> None:
    alg = prf("prfsha256")
    gcm = IkeKeySizes.for_algorithms(alg, encryption("aes256gcm16"))
    assert (gcm.sk_d, gcm.sk_a, gcm.sk_e, gcm.sk_p) == (32, 0, 36, 32)
    cbc = IkeKeySizes.for_algorithms(alg, encryption("aes128"), integrity("sha256"))
    assert (cbc.sk_a, cbc.sk_e) == (32, 16)
    keys = ike_keys(alg, b"s" * 32, b"n" * 32, b"m" * 32, b"i" * 8, b"r" * 8, gcm)
    assert keys.SK_ai == keys.SK_ar == b"" and len(keys.SK_er) == 36
    stream = prf_plus(alg, b"s" * 32, b"n" * 32 + b"m" * 32 + b"i" * 8 + b"r" * 8, gcm.total)
    assert keys.SK_pr == stream[-32:]


def test_child_keymat_with_and_without_pfs() -> None:
    alg = prf("prfsha1")
    plain = child_keymat(alg, b"d" * 20, b"ni", b"nr", length=72)
    assert plain == prf_plus(alg, b"d" * 20, b"ninr", 72)
    pfs = child_keymat(alg, b"d" * 20, b"ni", b"nr", b"gir", length=72)
    assert pfs == prf_plus(alg, b"d" * 20, b"girninr", 72)
