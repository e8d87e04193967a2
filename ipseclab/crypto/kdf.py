"""IKEv2 key derivation: SKEYSEED, the seven SK_* keys, rekeyed SKEYSEED and child SA KEYMAT.

Everything here is RFC 7296 §2.14, §2.17 and §2.18 written out; the NIST CAVP IKEv2 KDF
vectors (tests/data/vectors/ikev2_kdf_examples.json) check it byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.crypto.prf import PrfAlgorithm, prf_plus
from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm


def _nonce_key(prf: PrfAlgorithm, ni: bytes, nr: bytes) -> bytes:
    """The SKEYSEED key Ni | Nr; for fixed-key PRFs only 64 bits of each (RFC 7296 §2.14)."""
    if prf.fixed_key:
        return ni[:8] + nr[:8]
    return ni + nr


def skeyseed(prf: PrfAlgorithm, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14)."""
    return prf.prf(_nonce_key(prf, ni, nr), g_ir)


def skeyseed_rekey(prf: PrfAlgorithm, sk_d_old: bytes, g_ir_new: bytes, ni: bytes,
                   nr: bytes) -> bytes:
    """SKEYSEED of a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (RFC 7296 §2.18).

    ``prf`` is the *old* IKE SA's PRF: the rekeying exchange belongs to the old SA (§2.18);
    the new SA's PRF then derives the SK_* keys from this SKEYSEED. Ni and Nr are the nonces
    of the CREATE_CHILD_SA exchange.
    """
    return prf.prf(sk_d_old, g_ir_new + ni + nr)


@dataclass(frozen=True)
class IkeKeySizes:
    """Octets of each SK_* key: SK_d and SK_p* take the PRF's preferred key size, SK_a* the
    integrity key size (0 with an AEAD), SK_e* the encryption key plus its salt (RFC 5282 §7.1).
    """

    sk_d: int
    sk_a: int
    sk_e: int
    sk_p: int

    @classmethod
    def for_algorithms(cls, prf: PrfAlgorithm, encryption: EncryptionAlgorithm,
                       integrity: IntegrityAlgorithm | None = None) -> IkeKeySizes:
        sk_a = integrity.key_size if integrity is not None else 0
        return cls(prf.preferred_key_size, sk_a, encryption.keymat_size, prf.preferred_key_size)

    @property
    def total(self) -> int:
        return self.sk_d + 2 * self.sk_a + 2 * self.sk_e + 2 * self.sk_p


@dataclass(frozen=True)
class IkeKeys:
    """The seven keys of an IKE SA, in the order RFC 7296 §2.14 takes them from prf+.

    ``repr`` gives only the key sizes: a logged or printed IkeKeys must not leak keys.
    """

    SK_d: bytes
    SK_ai: bytes
    SK_ar: bytes
    SK_ei: bytes
    SK_er: bytes
    SK_pi: bytes
    SK_pr: bytes

    def __repr__(self) -> str:
        return (f"IkeKeys(SK_d={len(self.SK_d)}, SK_a={len(self.SK_ai)}, SK_e={len(self.SK_ei)},"
                f" SK_p={len(self.SK_pi)} octets)")


def ike_keys(prf: PrfAlgorithm, skeyseed: bytes, ni: bytes, nr: bytes, spi_i: bytes,
             spi_r: bytes, sizes: IkeKeySizes) -> IkeKeys:
    """The seven SK_* keys (RFC 7296 §2.14).

    {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
    """
    stream = prf_plus(prf, skeyseed, ni + nr + spi_i + spi_r, sizes.total)
    parts = []
    pos = 0
    for size in (sizes.sk_d, sizes.sk_a, sizes.sk_a, sizes.sk_e, sizes.sk_e, sizes.sk_p,
                 sizes.sk_p):
        parts.append(stream[pos:pos + size])
        pos += size
    return IkeKeys(*parts)


def child_keymat(prf: PrfAlgorithm, sk_d: bytes, ni: bytes, nr: bytes,
                 g_ir_new: bytes | None = None, *, length: int) -> bytes:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17).

    The new g^ir is there only when the CREATE_CHILD_SA exchange carried KE payloads (PFS).
    The caller splits KEYMAT: first all keys for initiator-to-responder traffic (encryption,
    then integrity), then those of the other direction.
    """
    seed = (g_ir_new or b"") + ni + nr
    return prf_plus(prf, sk_d, seed, length)
