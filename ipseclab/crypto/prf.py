"""IKEv2 pseudo-random functions (RFC 7296 §2.13, IANA "Transform Type 2") and prf+.

A PRF is one row: strongSwan keyword, IANA transform ID, output size, and the key size
RFC 7296 §2.13 calls "preferred" (the size of SK_d, SK_pi and SK_pr, §2.14). HMAC PRFs take
keys of any length. The AES based PRFs need a 128-bit key and say differently how any other
key length becomes one: AES-XCBC-PRF-128 (RFC 4434 §2) pads a shorter key with zeros and runs
a longer one through the PRF under a key of 16 zero octets; AES-CMAC-PRF-128 (RFC 4615 §3)
runs every key that is not 16 octets, shorter ones too, through AES-CMAC under the zero key.
"""

from __future__ import annotations

import difflib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from ipseclab.crypto.transforms import _Xcbc
from ipseclab.errors import IpsecLabError, UnknownAlgorithm

# IANA "Transform Type 2 - Pseudorandom Function Transform IDs"
PRF_HMAC_MD5 = 1
PRF_HMAC_SHA1 = 2
PRF_AES128_XCBC = 4
PRF_HMAC_SHA2_256 = 5
PRF_HMAC_SHA2_384 = 6
PRF_HMAC_SHA2_512 = 7
PRF_AES128_CMAC = 8

PRF_PLUS_MAX_BLOCKS = 255


def _aes_xcbc(key: bytes, data: bytes) -> bytes:
    return _Xcbc(key, 16).full_mac(data)


def _aes_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _fixed_key(mac: Callable[[bytes, bytes], bytes], pad_short: bool
               ) -> Callable[[bytes, bytes], bytes]:
    """Wrap an AES-128 MAC into a PRF that takes keys of any length (see the module docstring)."""

    def prf(key: bytes, data: bytes) -> bytes:
        if len(key) < 16 and pad_short:
            key = key + bytes(16 - len(key))
        elif len(key) != 16:
            key = mac(bytes(16), key)
        return mac(key, data)

    return prf


def _hmac(digest: str) -> Callable[[bytes, bytes], bytes]:
    return lambda key, data: hmac.digest(key, data, digest)


@dataclass(frozen=True)
class PrfAlgorithm:
    """A PRF transform. Sizes in octets.

    ``fixed_key`` marks the AES based PRFs: for them RFC 7296 §2.14 builds the SKEYSEED key
    from only the first 64 bits of Ni and of Nr.
    """

    keyword: str
    iana_id: int
    output_size: int
    preferred_key_size: int
    fixed_key: bool = False
    legacy: bool = False
    rfc: str = ""
    _function: Callable[[bytes, bytes], bytes] = field(repr=False, compare=False,
                                                      default=None)  # type: ignore

    def prf(self, key: bytes, data: bytes) -> bytes:
        """prf(K, S) of RFC 7296 §2.13."""
        return self._function(bytes(key), bytes(data))

    def __str__(self) -> str:
        return self.keyword


_ROWS = [
    PrfAlgorithm("prfmd5", PRF_HMAC_MD5, 16, 16, legacy=True, rfc="RFC 2104",
                 _function=_hmac("md5")),
    PrfAlgorithm("prfsha1", PRF_HMAC_SHA1, 20, 20, legacy=True, rfc="RFC 2104",
                 _function=_hmac("sha1")),
    PrfAlgorithm("prfaesxcbc", PRF_AES128_XCBC, 16, 16, fixed_key=True, rfc="RFC 4434",
                 _function=_fixed_key(_aes_xcbc, pad_short=True)),
    PrfAlgorithm("prfsha256", PRF_HMAC_SHA2_256, 32, 32, rfc="RFC 4868",
                 _function=_hmac("sha256")),
    PrfAlgorithm("prfsha384", PRF_HMAC_SHA2_384, 48, 48, rfc="RFC 4868",
                 _function=_hmac("sha384")),
    PrfAlgorithm("prfsha512", PRF_HMAC_SHA2_512, 64, 64, rfc="RFC 4868",
                 _function=_hmac("sha512")),
    PrfAlgorithm("prfaescmac", PRF_AES128_CMAC, 16, 16, fixed_key=True, rfc="RFC 4615",
                 _function=_fixed_key(_aes_cmac, pad_short=False)),
]

PRF: dict[str, PrfAlgorithm] = {a.keyword: a for a in _ROWS}

# strongSwan spellings (its proposal keyword list).
PRF_ALIASES = {
    "prfsha": "prfsha1", "prfxcbc": "prfaesxcbc", "prfcmac": "prfaescmac",
    "prfsha2_256": "prfsha256", "prfsha2_384": "prfsha384", "prfsha2_512": "prfsha512",
}

# The PRF an IKE proposal gets when it names an integrity algorithm but no PRF.
PRF_FOR_INTEGRITY = {
    "md5": "prfmd5", "sha1": "prfsha1", "aesxcbc": "prfaesxcbc", "aescmac": "prfaescmac",
    "sha256": "prfsha256", "sha384": "prfsha384", "sha512": "prfsha512",
}


def prf(keyword: str) -> PrfAlgorithm:
    """Look up a PRF by strongSwan keyword (``prfsha256``)."""
    key = keyword.lower()
    alg = PRF.get(PRF_ALIASES.get(key, key))
    if alg is None:
        near = difflib.get_close_matches(key, list(PRF), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UnknownAlgorithm(f"unknown PRF '{keyword}'{hint}", token=keyword)
    return alg


def prf_by_id(iana_id: int) -> PrfAlgorithm | None:
    """Look up by IANA transform ID; None when we do not implement it."""
    for alg in PRF.values():
        if alg.iana_id == iana_id:
            return alg
    return None


def prf_plus(prf: PrfAlgorithm, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+ (RFC 7296 §2.13): T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), cut to ``length``.

    The counter is one octet, so at most 255 blocks can be made.
    """
    blocks = -(-length // prf.output_size)
    if blocks > PRF_PLUS_MAX_BLOCKS:
        raise IpsecLabError(
            f"prf+ with {prf.keyword} cannot make {length} octets"
            f" (at most {PRF_PLUS_MAX_BLOCKS * prf.output_size})")
    out = bytearray()
    block = b""
    for n in range(1, blocks + 1):
        block = prf.prf(key, block + seed + bytes((n,)))
        out += block
    return bytes(out[:length])
