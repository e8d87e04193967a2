"""IKE SA and child SA keys with sizes taken from the negotiated transforms.

The arithmetic (SKEYSEED, prf+, KEYMAT) lives in :mod:`ipseclab.crypto.kdf`; this module
knows which algorithms an IKE SA or a child SA negotiated and cuts the key stream up in the
order RFC 7296 fixes: §2.14 for the seven SK_* keys, §2.17 for KEYMAT (the keys of the
initiator-to-responder SA first, each SA's encryption key, with an AEAD's salt, before its
integrity key).
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.crypto import kdf
from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm

__all__ = ["ChildKeys", "IkeSuite", "child_keys", "ike_sa_keys"]


@dataclass(frozen=True)
class IkeSuite:
    """The algorithms of one IKE SA (the responder's choice, RFC 7296 §2.7)."""

    encryption: EncryptionAlgorithm
    integrity: IntegrityAlgorithm | None
    prf: PrfAlgorithm

    @property
    def key_sizes(self) -> kdf.IkeKeySizes:
        return kdf.IkeKeySizes.for_algorithms(self.prf, self.encryption, self.integrity)


def ike_sa_keys(suite: IkeSuite, ni: bytes, nr: bytes, g_ir: bytes, spi_i: bytes,
                spi_r: bytes) -> kdf.IkeKeys:
    """SKEYSEED = prf(Ni | Nr, g^ir), then the seven keys from prf+ (RFC 7296 §2.14)."""
    seed = kdf.skeyseed(suite.prf, ni, nr, g_ir)
    return kdf.ike_keys(suite.prf, seed, ni, nr, spi_i, spi_r, suite.key_sizes)


@dataclass(frozen=True)
class ChildKeys:
    """KEYMAT split into the keys of the two SAs of one child SA (RFC 7296 §2.17)."""

    encr_i: bytes  # initiator -> responder
    integ_i: bytes
    encr_r: bytes  # responder -> initiator
    integ_r: bytes

    def __repr__(self) -> str:
        return "ChildKeys(...)"


def child_keys(prf: PrfAlgorithm, sk_d: bytes, ni: bytes, nr: bytes,
               encryption: EncryptionAlgorithm | None, integrity: IntegrityAlgorithm | None,
               g_ir_new: bytes | None = None) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), cut as §2.17 says."""
    e = encryption.keymat_size if encryption is not None else 0  # AH: integrity only
    a = integrity.key_size if integrity is not None else 0
    keymat = kdf.child_keymat(prf, sk_d, ni, nr, g_ir_new, length=2 * (e + a))
    return ChildKeys(keymat[:e], keymat[e:e + a], keymat[e + a:2 * e + a], keymat[2 * e + a:])
