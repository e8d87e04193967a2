"""The ESP/AH transform registry: encryption and integrity algorithms as data.

Each algorithm is one row: its strongSwan proposal keyword, its IANA transform ID
(RFC 7296 §3.3.2, IANA "IKEv2 Transform Type 1/3"), its sizes, the name the Linux kernel
gives it in ``ip xfrm``, and the name Wireshark's ``esp_sa`` table uses. Adding an
algorithm is adding a row. The processing code in :mod:`ipseclab.ipsec` reads only these
rows and the small cipher/MAC objects that :meth:`EncryptionAlgorithm.new` and
:meth:`IntegrityAlgorithm.new` build once per SA.
"""

from __future__ import annotations

import difflib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.cmac import CMAC

from ipseclab.errors import AuthenticationFailed, ConfigError, UnknownAlgorithm

# IANA "Transform Type 1 - Encryption Algorithm Transform IDs"
ENCR_3DES = 3
ENCR_NULL = 11
ENCR_AES_CBC = 12
ENCR_AES_CTR = 13
ENCR_AES_CCM_8 = 14
ENCR_AES_CCM_12 = 15
ENCR_AES_CCM_16 = 16
ENCR_AES_GCM_8 = 18
ENCR_AES_GCM_12 = 19
ENCR_AES_GCM_16 = 20
ENCR_NULL_AUTH_AES_GMAC = 21
ENCR_CHACHA20_POLY1305 = 28

# IANA "Transform Type 3 - Integrity Algorithm Transform IDs"
AUTH_HMAC_MD5_96 = 1
AUTH_HMAC_SHA1_96 = 2
AUTH_AES_XCBC_96 = 5
AUTH_AES_CMAC_96 = 8
AUTH_HMAC_SHA2_256_128 = 12
AUTH_HMAC_SHA2_384_192 = 13
AUTH_HMAC_SHA2_512_256 = 14


class EspCipher:
    """What ESP needs from an encryption algorithm, keyed once per SA.

    ``encrypt`` returns the bytes that follow the IV on the wire (ciphertext, and for
    combined-mode algorithms the ICV); ``decrypt`` takes those bytes back. ``aad`` is the
    ESP header as RFC 4106 §5 defines it (SPI || sequence number, with the high ESN bits
    between them when ESN is on); ciphers without integrity ignore it.
    """

    __slots__ = ()

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        raise NotImplementedError


class _Null(EspCipher):
    """ENCR_NULL (RFC 2410): the identity. Confidentiality: none at all."""

    __slots__ = ()

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return plaintext

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        return data


class _Cbc(EspCipher):
    """CBC mode (AES: RFC 3602; 3DES: RFC 2451). The IV is random per packet."""

    __slots__ = ("_algorithm",)

    def __init__(self, algorithm: algorithms.AES | TripleDES) -> None:
        self._algorithm = algorithm

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        enc = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) % (self._algorithm.block_size // 8):
            raise AuthenticationFailed("ciphertext is not a whole number of blocks")
        dec = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()


class _Ctr(EspCipher):
    """AES-CTR for ESP (RFC 3686 §4): counter block = nonce(4) || IV(8) || 00000001."""

    __slots__ = ("_aes", "_nonce")

    def __init__(self, key: bytes, salt: bytes) -> None:
        self._aes = algorithms.AES(key)
        self._nonce = salt

    def _apply(self, iv: bytes, data: bytes) -> bytes:
        ctx = Cipher(self._aes, modes.CTR(self._nonce + iv + b"\x00\x00\x00\x01")).encryptor()
        return ctx.update(data) + ctx.finalize()

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._apply(iv, plaintext)

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        return self._apply(iv, data)


class _Aead(EspCipher):
    """A combined-mode cipher whose nonce is salt || IV (RFC 4106 §4, RFC 4309 §4, RFC 7634 §2).

    The AEAD object is built once per SA, which is most of what makes ESP fast in Python.
    ``raw`` exposes it to ESP's fast path: (encrypt, decrypt, salt).
    """

    __slots__ = ("_aead", "_icv", "_salt")

    @property
    def raw(self) -> tuple:
        return self._aead.encrypt, self._aead.decrypt, self._salt

    def __init__(self, aead: AESGCM | AESCCM | ChaCha20Poly1305, salt: bytes, icv: int) -> None:
        self._aead = aead
        self._salt = salt
        self._icv = icv

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(self._salt + iv, plaintext, aad)

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < self._icv:
            raise AuthenticationFailed("shorter than the ICV")
        try:
            return self._aead.decrypt(self._salt + iv, data, aad)
        except InvalidTag:
            raise AuthenticationFailed("ICV mismatch") from None


class _GcmShortTag(EspCipher):
    """AES-GCM with an 8- or 12-octet ICV (RFC 4106 §6): the 16-octet tag, truncated."""

    __slots__ = ("_aes", "_icv", "_salt")

    def __init__(self, key: bytes, salt: bytes, icv: int) -> None:
        self._aes = algorithms.AES(key)
        self._salt = salt
        self._icv = icv

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        enc = Cipher(self._aes, modes.GCM(self._salt + iv)).encryptor()
        enc.authenticate_additional_data(aad)
        ct = enc.update(plaintext) + enc.finalize()
        return ct + enc.tag[: self._icv]

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < self._icv:
            raise AuthenticationFailed("shorter than the ICV")
        ct, tag = data[: -self._icv], data[-self._icv :]
        dec = Cipher(
            self._aes, modes.GCM(self._salt + iv, tag, min_tag_length=self._icv)
        ).decryptor()
        dec.authenticate_additional_data(aad)
        try:
            return dec.update(ct) + dec.finalize()
        except InvalidTag:
            raise AuthenticationFailed("ICV mismatch") from None


class _Gmac(EspCipher):
    """ENCR_NULL_AUTH_AES_GMAC (RFC 4543 §3.3): integrity only, payload sent in the clear.

    GCM is run with an empty plaintext and AAD = ESP header || IV || payload.
    """

    __slots__ = ("_aead", "_salt")

    def __init__(self, key: bytes, salt: bytes) -> None:
        self._aead = AESGCM(key)
        self._salt = salt

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return plaintext + self._aead.encrypt(self._salt + iv, b"", aad + iv + plaintext)

    def decrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < 16:
            raise AuthenticationFailed("shorter than the ICV")
        payload, tag = data[:-16], data[-16:]
        try:
            self._aead.decrypt(self._salt + iv, tag, aad + iv + payload)
        except InvalidTag:
            raise AuthenticationFailed("ICV mismatch") from None
        return payload


@dataclass(frozen=True)
class EncryptionAlgorithm:
    """An ESP encryption transform.

    Sizes are in octets. ``key_size`` excludes the salt; the keying material an SA needs
    (KEYMAT, RFC 7296 §2.17, or an ``ip xfrm`` key) is ``key_size + salt_size`` octets,
    salt last. ``counter_iv`` algorithms must never repeat an IV under one key, so ESP
    uses the sequence number as IV (RFC 4106 §3.1); the others take a random IV.
    """

    keyword: str
    iana_id: int
    key_size: int
    iv_size: int
    block_size: int
    icv_size: int = 0
    salt_size: int = 0
    aead: bool = False
    counter_iv: bool = False
    confidential: bool = True
    kernel_name: str = ""
    wireshark_name: str = ""
    ike_wireshark_name: str = ""  # its name in Wireshark's ikev2_decryption_table
    legacy: bool = False
    rfc: str = ""
    _factory: Callable[[bytes, bytes, int], EspCipher] = field(repr=False, compare=False,
                                                               default=None)  # type: ignore

    @property
    def keymat_size(self) -> int:
        """Octets of keying material: the key and then the salt."""
        return self.key_size + self.salt_size

    @property
    def key_bits(self) -> int:
        return self.key_size * 8

    def new(self, keymat: bytes) -> EspCipher:
        """Build the per-SA cipher from ``key || salt``."""
        if len(keymat) != self.keymat_size:
            raise ConfigError(
                f"{self.keyword} needs {self.keymat_size} octets of key material"
                f" ({self.keymat_size * 8} bits), got {len(keymat)}"
            )
        return self._factory(keymat[: self.key_size], keymat[self.key_size :], self.icv_size)

    def __str__(self) -> str:
        return self.keyword


class IntegrityCheck:
    """What ESP and AH need from an integrity algorithm, keyed once per SA."""

    __slots__ = ("icv_size",)

    def __init__(self, icv_size: int) -> None:
        self.icv_size = icv_size

    def full_mac(self, data: bytes) -> bytes:
        raise NotImplementedError

    def compute(self, data: bytes) -> bytes:
        """The ICV: the MAC truncated to ``icv_size`` octets (RFC 2404 §2, RFC 4868 §2.3)."""
        return self.full_mac(data)[: self.icv_size]

    def verify(self, data: bytes, icv: bytes) -> bool:
        """Constant-time check of a received ICV."""
        return hmac.compare_digest(self.compute(data), icv)


class _Hmac(IntegrityCheck):
    __slots__ = ("_digest", "_key")

    def __init__(self, key: bytes, digest: str, icv_size: int) -> None:
        super().__init__(icv_size)
        self._key = key
        self._digest = digest

    def full_mac(self, data: bytes) -> bytes:
        return hmac.digest(self._key, data, self._digest)


class _Xcbc(IntegrityCheck):
    """AES-XCBC-MAC (RFC 3566 §4): CBC-MAC with three keys derived from K."""

    __slots__ = ("_k1", "_k2", "_k3")

    def __init__(self, key: bytes, icv_size: int) -> None:
        super().__init__(icv_size)
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self._k1 = algorithms.AES(ecb.update(b"\x01" * 16))
        self._k2 = int.from_bytes(ecb.update(b"\x02" * 16), "big")
        self._k3 = int.from_bytes(ecb.update(b"\x03" * 16), "big")

    def full_mac(self, data: bytes) -> bytes:
        n = len(data)
        if n and n % 16 == 0:
            head, last, mask = data[:-16], data[-16:], self._k2
        else:
            cut = n - n % 16
            head, last, mask = data[:cut], data[cut:] + b"\x80" + b"\x00" * (15 - n % 16), self._k3
        cbc = Cipher(self._k1, modes.CBC(b"\x00" * 16)).encryptor()
        prev = (cbc.update(head)[-16:] if head else b"\x00" * 16)
        block = (int.from_bytes(prev, "big") ^ int.from_bytes(last, "big") ^ mask).to_bytes(
            16, "big")
        return Cipher(self._k1, modes.ECB()).encryptor().update(block)


class _Cmac(IntegrityCheck):
    """AES-CMAC (RFC 4493), truncated to 96 bits for IPsec (RFC 4494)."""

    __slots__ = ("_aes",)

    def __init__(self, key: bytes, icv_size: int) -> None:
        super().__init__(icv_size)
        self._aes = algorithms.AES(key)

    def full_mac(self, data: bytes) -> bytes:
        c = CMAC(self._aes)
        c.update(data)
        return c.finalize()


@dataclass(frozen=True)
class IntegrityAlgorithm:
    """An integrity transform for ESP, AH and IKE (RFC 7296 §3.3.2, Transform Type 3)."""

    keyword: str
    iana_id: int
    key_size: int
    icv_size: int
    kernel_name: str = ""
    wireshark_name: str = ""
    ike_wireshark_name: str = ""
    legacy: bool = False
    rfc: str = ""
    _factory: Callable[[bytes, int], IntegrityCheck] = field(repr=False, compare=False,
                                                             default=None)  # type: ignore

    def new(self, key: bytes) -> IntegrityCheck:
        if len(key) != self.key_size:
            raise ConfigError(
                f"{self.keyword} needs a {self.key_size * 8}-bit key, got {len(key) * 8} bits"
            )
        return self._factory(key, self.icv_size)

    def truncated(self, icv_bits: int) -> IntegrityAlgorithm:
        """The same MAC with another ICV length (``ip xfrm ... auth-trunc NAME KEY BITS``).

        Linux's plain ``auth 'hmac(sha256)'`` truncates to 96 bits, not the 128 of
        RFC 4868; such an SA only talks to peers configured the same way.
        """
        # Every MAC here outputs as many bits as its key has: HMAC keys are digest-sized
        # (RFC 4868 §2.1.1), the AES MACs have 128-bit keys and blocks. A longer ICV than
        # the MAC output would be cut short by compute() and never verify.
        if icv_bits % 8 or not 32 <= icv_bits <= self.key_size * 8:
            raise ConfigError(f"ICV length {icv_bits} bits is not usable with {self.keyword}")
        if icv_bits == self.icv_size * 8:
            return self
        return replace(self, keyword=f"{self.keyword}_{icv_bits}", icv_size=icv_bits // 8,
                       wireshark_name="")

    def __str__(self) -> str:
        return self.keyword


def _hmac_factory(digest: str) -> Callable[[bytes, int], IntegrityCheck]:
    return lambda key, icv: _Hmac(key, digest, icv)


def _aes_cbc(key: bytes, salt: bytes, icv: int) -> EspCipher:
    return _Cbc(algorithms.AES(key))


def _3des_cbc(key: bytes, salt: bytes, icv: int) -> EspCipher:
    return _Cbc(TripleDES(key))


def _gcm(key: bytes, salt: bytes, icv: int) -> EspCipher:
    return _Aead(AESGCM(key), salt, icv) if icv == 16 else _GcmShortTag(key, salt, icv)


def _ccm(key: bytes, salt: bytes, icv: int) -> EspCipher:
    return _Aead(AESCCM(key, tag_length=icv), salt, icv)


def _encryption_rows() -> list[EncryptionAlgorithm]:
    rows = [
        EncryptionAlgorithm("null", ENCR_NULL, 0, 0, 4, confidential=False,
                            kernel_name="ecb(cipher_null)", wireshark_name="NULL",
                            ike_wireshark_name="NULL [RFC2410]", rfc="RFC 2410",
                            _factory=lambda k, s, i: _Null()),
        EncryptionAlgorithm("3des", ENCR_3DES, 24, 8, 8, kernel_name="cbc(des3_ede)",
                            wireshark_name="TripleDES-CBC [RFC2451]",
                            ike_wireshark_name="3DES [RFC2451]", legacy=True,
                            rfc="RFC 2451", _factory=_3des_cbc),
        EncryptionAlgorithm("chacha20poly1305", ENCR_CHACHA20_POLY1305, 32, 8, 4, icv_size=16,
                            salt_size=4, aead=True, counter_iv=True,
                            kernel_name="rfc7539esp(chacha20,poly1305)",
                            wireshark_name="ChaCha20-Poly1305 [RFC7634]", rfc="RFC 7634",
                            _factory=lambda k, s, i: _Aead(ChaCha20Poly1305(k), s, i)),
    ]
    for bits in (128, 192, 256):
        size = bits // 8
        rows.append(EncryptionAlgorithm(
            f"aes{bits}", ENCR_AES_CBC, size, 16, 16, kernel_name="cbc(aes)",
            wireshark_name="AES-CBC [RFC3602]", ike_wireshark_name=f"AES-CBC-{bits} [RFC3602]",
            rfc="RFC 3602", _factory=_aes_cbc))
        rows.append(EncryptionAlgorithm(
            f"aes{bits}ctr", ENCR_AES_CTR, size, 8, 4, salt_size=4, counter_iv=True,
            kernel_name="rfc3686(ctr(aes))", wireshark_name="AES-CTR [RFC3686]",
            ike_wireshark_name=f"AES-CTR-{bits} [RFC5930]", rfc="RFC 3686",
            _factory=lambda k, s, i: _Ctr(k, s)))
        for icv, iana in ((8, ENCR_AES_GCM_8), (12, ENCR_AES_GCM_12), (16, ENCR_AES_GCM_16)):
            rows.append(EncryptionAlgorithm(
                f"aes{bits}gcm{icv}", iana, size, 8, 4, icv_size=icv, salt_size=4, aead=True,
                counter_iv=True, kernel_name="rfc4106(gcm(aes))",
                wireshark_name=f"AES-GCM with {icv} octet ICV [RFC4106]",
                ike_wireshark_name=f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]", rfc="RFC 4106",
                _factory=_gcm))
        for icv, iana in ((8, ENCR_AES_CCM_8), (12, ENCR_AES_CCM_12), (16, ENCR_AES_CCM_16)):
            rows.append(EncryptionAlgorithm(
                f"aes{bits}ccm{icv}", iana, size, 8, 4, icv_size=icv, salt_size=3, aead=True,
                counter_iv=True, kernel_name="rfc4309(ccm(aes))",
                wireshark_name=f"AES-CCM with {icv} octet ICV [RFC4309]",
                ike_wireshark_name=f"AES-CCM-{bits} with {icv} octet ICV [RFC5282]", rfc="RFC 4309",
                _factory=_ccm))
        rows.append(EncryptionAlgorithm(
            f"aes{bits}gmac", ENCR_NULL_AUTH_AES_GMAC, size, 8, 4, icv_size=16, salt_size=4,
            aead=True, counter_iv=True, confidential=False, kernel_name="rfc4543(gcm(aes))",
            wireshark_name="AES-NULL-GMAC [RFC4543]", rfc="RFC 4543",
            _factory=lambda k, s, i: _Gmac(k, s)))
    return rows


IKE_UNCHECKED_96 = "ANY 96-bits of Authentication [No Checking]"

_INTEGRITY_ROWS = [
    IntegrityAlgorithm("md5", AUTH_HMAC_MD5_96, 16, 12, "hmac(md5)", "HMAC-MD5-96 [RFC2403]",
                       "HMAC_MD5_96 [RFC2403]", legacy=True, rfc="RFC 2403",
                       _factory=_hmac_factory("md5")),
    IntegrityAlgorithm("sha1", AUTH_HMAC_SHA1_96, 20, 12, "hmac(sha1)", "HMAC-SHA-1-96 [RFC2404]",
                       "HMAC_SHA1_96 [RFC2404]", legacy=True, rfc="RFC 2404",
                       _factory=_hmac_factory("sha1")),
    # Wireshark's IKEv2 table has no AES-XCBC or AES-CMAC: it decrypts such an IKE SA
    # with an ICV of the right length that it does not check.
    IntegrityAlgorithm("aesxcbc", AUTH_AES_XCBC_96, 16, 12, "xcbc(aes)",
                       "AES-XCBC-MAC-96 [RFC3566]", IKE_UNCHECKED_96, rfc="RFC 3566",
                       _factory=lambda k, i: _Xcbc(k, i)),
    IntegrityAlgorithm("aescmac", AUTH_AES_CMAC_96, 16, 12, "cmac(aes)", "AES-CMAC-96 [RFC4494]",
                       IKE_UNCHECKED_96, rfc="RFC 4494", _factory=lambda k, i: _Cmac(k, i)),
    IntegrityAlgorithm("sha256", AUTH_HMAC_SHA2_256_128, 32, 16, "hmac(sha256)",
                       "HMAC-SHA-256-128 [RFC4868]", "HMAC_SHA2_256_128 [RFC4868]",
                       rfc="RFC 4868", _factory=_hmac_factory("sha256")),
    IntegrityAlgorithm("sha384", AUTH_HMAC_SHA2_384_192, 48, 24, "hmac(sha384)",
                       "HMAC-SHA-384-192 [RFC4868]", "HMAC_SHA2_384_192 [RFC4868]",
                       rfc="RFC 4868", _factory=_hmac_factory("sha384")),
    IntegrityAlgorithm("sha512", AUTH_HMAC_SHA2_512_256, 64, 32, "hmac(sha512)",
                       "HMAC-SHA-512-256 [RFC4868]", "HMAC_SHA2_512_256 [RFC4868]",
                       rfc="RFC 4868", _factory=_hmac_factory("sha512")),
]

ENCRYPTION: dict[str, EncryptionAlgorithm] = {a.keyword: a for a in _encryption_rows()}
INTEGRITY: dict[str, IntegrityAlgorithm] = {a.keyword: a for a in _INTEGRITY_ROWS}

# strongSwan accepts these spellings too (its proposal keyword list).
ENCRYPTION_ALIASES = {
    "aes": "aes128", "aesctr": "aes128ctr", "aes128gcm128": "aes128gcm16",
    "aes192gcm128": "aes192gcm16", "aes256gcm128": "aes256gcm16", "aes128gcm64": "aes128gcm8",
    "aes192gcm64": "aes192gcm8", "aes256gcm64": "aes256gcm8", "aes128gcm96": "aes128gcm12",
    "aes192gcm96": "aes192gcm12", "aes256gcm96": "aes256gcm12", "aes128ccm128": "aes128ccm16",
    "aes192ccm128": "aes192ccm16", "aes256ccm128": "aes256ccm16", "aes128ccm64": "aes128ccm8",
    "aes192ccm64": "aes192ccm8", "aes256ccm64": "aes256ccm8", "aes128ccm96": "aes128ccm12",
    "aes192ccm96": "aes192ccm12", "aes256ccm96": "aes256ccm12", "aes128gcm": "aes128gcm16",
    "aes192gcm": "aes192gcm16", "aes256gcm": "aes256gcm16", "aes128ccm": "aes128ccm16",
    "aes192ccm": "aes192ccm16", "aes256ccm": "aes256ccm16", "des3": "3des",
}
INTEGRITY_ALIASES = {
    "sha": "sha1", "sha2_256": "sha256", "sha2_384": "sha384", "sha2_512": "sha512",
    "xcbc": "aesxcbc", "cmac": "aescmac",
}


def _suggest(word: str, known: list[str]) -> str:
    near = difflib.get_close_matches(word, known, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else ""


def encryption(keyword: str) -> EncryptionAlgorithm:
    """Look up an ESP encryption algorithm by strongSwan keyword."""
    key = keyword.lower()
    alg = ENCRYPTION.get(ENCRYPTION_ALIASES.get(key, key))
    if alg is None:
        raise UnknownAlgorithm(
            f"unknown encryption algorithm '{keyword}'" + _suggest(key, list(ENCRYPTION)),
            token=keyword)
    return alg


def integrity(keyword: str) -> IntegrityAlgorithm:
    """Look up an integrity algorithm by strongSwan keyword."""
    key = keyword.lower()
    alg = INTEGRITY.get(INTEGRITY_ALIASES.get(key, key))
    if alg is None:
        raise UnknownAlgorithm(
            f"unknown integrity algorithm '{keyword}'" + _suggest(key, list(INTEGRITY)),
            token=keyword)
    return alg


def encryption_by_id(iana_id: int, key_bits: int | None = None) -> EncryptionAlgorithm | None:
    """Look up by IANA transform ID and Key Length attribute (RFC 7296 §3.3.5)."""
    for alg in ENCRYPTION.values():
        if alg.iana_id == iana_id and (key_bits is None or alg.key_bits == key_bits):
            return alg
    return None


def integrity_by_id(iana_id: int) -> IntegrityAlgorithm | None:
    for alg in INTEGRITY.values():
        if alg.iana_id == iana_id:
            return alg
    return None


def encryption_by_wireshark_name(name: str, keymat_size: int) -> EncryptionAlgorithm | None:
    """The algorithm behind an ``esp_sa`` row; the key length picks AES-128/192/256."""
    for alg in ENCRYPTION.values():
        if alg.wireshark_name == name and alg.keymat_size == keymat_size:
            return alg
    return None


def integrity_by_wireshark_name(name: str) -> IntegrityAlgorithm | None:
    for alg in INTEGRITY.values():
        if alg.wireshark_name == name:
            return alg
    return None
