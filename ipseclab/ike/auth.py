"""The AUTH payload's value: shared keys and digital signatures (RFC 7296 §2.15, RFC 7427).

Both peers sign (or MAC) the same kind of octets (§2.15)::

    InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)

:func:`signed_octets` builds them; :func:`psk_auth` (from :mod:`.negotiation`) MACs them
with a shared key; :func:`sign` and :func:`verify` sign them with a private key:

* method 14, Digital Signature (RFC 7427): AUTH data = one length octet, the DER
  AlgorithmIdentifier of the scheme, the signature. Schemes: sha256/384/512WithRSAEncryption
  (PKCS#1 v1.5), RSASSA-PSS with MGF1 and salt = hash length, ecdsa-with-SHA256/384/512
  (signature as DER Ecdsa-Sig-Value), Ed25519/Ed448 (RFC 8420, hash "identity");
* method 1, RSA Digital Signature: PKCS#1 v1.5 over SHA-1 (RFC 7296);
* methods 9/10/11, ECDSA with SHA-256/P-256, SHA-384/P-384, SHA-512/P-521 (RFC 4754):
  the signature is r | s, each as long as the curve's order.

The hash of method 14 is chosen with SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4) by
:func:`choose_signature_hash`. strongSwan signs RSA with PKCS#1 v1.5 unless
``charon.rsa_pss`` is set or the auth constraint says ``rsa/pss``.
:func:`verify` returns a verdict and never raises on a malformed AUTH payload.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.errors import ConfigError
from ipseclab.ike.constants import AuthMethod, HashAlgorithm
from ipseclab.ike.negotiation import auth_equal, psk_auth

__all__ = [
    "DEFAULT_SIGNATURE_HASHES",
    "SignatureScheme",
    "auth_equal",
    "auth_method_for_key",
    "choose_signature_hash",
    "psk_auth",
    "sign",
    "signed_octets",
    "verify",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey \
    | ed448.Ed448PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey \
    | ed448.Ed448PublicKey

# What strongSwan announces in SIGNATURE_HASH_ALGORITHMS, in its order.
DEFAULT_SIGNATURE_HASHES = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384,
                            HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY)


def signed_octets(prf: PrfAlgorithm, sa_init_message: bytes, peer_nonce: bytes, sk_p: bytes,
                  id_body: bytes) -> bytes:
    """The octets a peer signs (§2.15): its own IKE_SA_INIT message as sent, the peer's
    nonce data, and prf(SK_p, ID body) with its own SK_pi/SK_pr and IDi/IDr body (the ID
    payload without its 4-octet generic header, i.e. ID Type, RESERVED, data)."""
    return sa_init_message + peer_nonce + prf.prf(sk_p, id_body)


# -- minimal DER for AlgorithmIdentifier ----------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


_NULL = b"\x05\x00"
_HASH_OIDS = {HashAlgorithm.SHA1: "1.3.14.3.2.26", HashAlgorithm.SHA2_256: "2.16.840.1.101.3.4.2.1",
              HashAlgorithm.SHA2_384: "2.16.840.1.101.3.4.2.2",
              HashAlgorithm.SHA2_512: "2.16.840.1.101.3.4.2.3"}
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA1: hashes.SHA1, HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384, HashAlgorithm.SHA2_512: hashes.SHA512}
_RSA_OIDS = {HashAlgorithm.SHA2_256: "1.2.840.113549.1.1.11",
             HashAlgorithm.SHA2_384: "1.2.840.113549.1.1.12",
             HashAlgorithm.SHA2_512: "1.2.840.113549.1.1.13"}
_ECDSA_OIDS = {HashAlgorithm.SHA2_256: "1.2.840.10045.4.3.2",
               HashAlgorithm.SHA2_384: "1.2.840.10045.4.3.3",
               HashAlgorithm.SHA2_512: "1.2.840.10045.4.3.4"}
_PSS_OID, _MGF1_OID = "1.2.840.113549.1.1.10", "1.2.840.113549.1.1.8"
_ED25519_OID, _ED448_OID = "1.3.101.112", "1.3.101.113"


class KeyType(enum.Enum):
    RSA = "rsa"
    ECDSA = "ecdsa"
    ED25519 = "ed25519"
    ED448 = "ed448"


@dataclass(frozen=True)
class SignatureScheme:
    """One RFC 7427 signature scheme: key type, hash, PSS or not, and its DER identifier."""

    key_type: KeyType
    hash_alg: HashAlgorithm
    pss: bool = False

    @property
    def name(self) -> str:
        if self.key_type in (KeyType.ED25519, KeyType.ED448):
            return self.key_type.value
        bits = {1: "sha1", 2: "sha256", 3: "sha384", 4: "sha512"}[self.hash_alg]
        kind = "rsa/pss" if self.pss else self.key_type.value
        return f"{kind}-{bits}"

    def algorithm_identifier(self) -> bytes:
        """The DER AlgorithmIdentifier (RFC 7427 Appendix A)."""
        if self.key_type is KeyType.ED25519:
            return _der(0x30, _oid(_ED25519_OID))
        if self.key_type is KeyType.ED448:
            return _der(0x30, _oid(_ED448_OID))
        if self.key_type is KeyType.ECDSA:
            return _der(0x30, _oid(_ECDSA_OIDS[self.hash_alg]))
        if not self.pss:
            return _der(0x30, _oid(_RSA_OIDS[self.hash_alg]) + _NULL)
        hash_id = _der(0x30, _oid(_HASH_OIDS[self.hash_alg]) + _NULL)
        salt = _HASHES[self.hash_alg].digest_size
        params = (_der(0xA0, hash_id) + _der(0xA1, _der(0x30, _oid(_MGF1_OID) + hash_id))
                  + _der(0xA2, _der(0x02, bytes([salt]))))
        return _der(0x30, _oid(_PSS_OID) + _der(0x30, params))


def _scheme_table() -> dict[bytes, SignatureScheme]:
    table = {}
    for h in (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512):
        for scheme in (SignatureScheme(KeyType.RSA, h), SignatureScheme(KeyType.RSA, h, True),
                       SignatureScheme(KeyType.ECDSA, h)):
            table[scheme.algorithm_identifier()] = scheme
    for kt in (KeyType.ED25519, KeyType.ED448):
        scheme = SignatureScheme(kt, HashAlgorithm.IDENTITY)
        table[scheme.algorithm_identifier()] = scheme
    # RFC 4055 lets the hash identifiers inside PSS parameters omit NULL: accept that too
    for h in (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512):
        hash_id = _der(0x30, _oid(_HASH_OIDS[h]))
        salt = _HASHES[h].digest_size
        params = (_der(0xA0, hash_id) + _der(0xA1, _der(0x30, _oid(_MGF1_OID) + hash_id))
                  + _der(0xA2, _der(0x02, bytes([salt]))))
        table[_der(0x30, _oid(_PSS_OID) + _der(0x30, params))] = SignatureScheme(
            KeyType.RSA, h, True)
    return table


_SCHEMES = _scheme_table()


def _key_type(key: object) -> KeyType:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeyType.RSA
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return KeyType.ECDSA
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return KeyType.ED448
    raise ConfigError(f"{type(key).__name__} keys cannot sign IKE messages")


# RFC 4754: method -> (curve, hash)
_CLASSIC_ECDSA: dict[int, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm]]] = {
    AuthMethod.ECDSA_SHA256_P256: (ec.SECP256R1, hashes.SHA256),
    AuthMethod.ECDSA_SHA384_P384: (ec.SECP384R1, hashes.SHA384),
    AuthMethod.ECDSA_SHA512_P521: (ec.SECP521R1, hashes.SHA512),
}


def auth_method_for_key(key: object, peer_hashes: Iterable[int] | None) -> AuthMethod:
    """Method 14 if the peer sent SIGNATURE_HASH_ALGORITHMS (``peer_hashes`` not None),
    else the classic method for the key: 1 for RSA, 9/10/11 by the ECDSA curve."""
    if peer_hashes is not None:
        return AuthMethod.DIGITAL_SIGNATURE
    kind = _key_type(key)
    if kind is KeyType.RSA:
        return AuthMethod.RSA
    if kind is KeyType.ECDSA:
        curve = key.curve  # type: ignore[union-attr]
        for method, (cls, _) in _CLASSIC_ECDSA.items():
            if isinstance(curve, cls):
                return AuthMethod(method)
    raise ConfigError(f"a {kind.value} key needs RFC 7427 signature authentication, which the"
                      " peer did not announce")


def choose_signature_hash(ours: Iterable[int], theirs: Iterable[int], key: object | None = None
                          ) -> HashAlgorithm | None:
    """The first of our hashes the peer also announced (RFC 7427 §4), fit for ``key``:
    Ed25519/Ed448 take only ``identity``, RSA and ECDSA only SHA-2. None if no overlap."""
    theirs = set(theirs)
    kind = _key_type(key) if key is not None else None
    for h in ours:
        if h not in theirs:
            continue
        if kind is None:
            return HashAlgorithm(h)
        if kind in (KeyType.ED25519, KeyType.ED448):
            if h == HashAlgorithm.IDENTITY:
                return HashAlgorithm(h)
        elif h in _RSA_OIDS:
            return HashAlgorithm(h)
    return None


def sign(private_key: PrivateKey, method: int, hash_alg: int | None, octets: bytes,
         *, pss: bool = False) -> bytes:
    """The AUTH payload's data (after Auth Method and RESERVED) for ``octets``.

    ``hash_alg`` matters for method 14 only (a :class:`HashAlgorithm`, ``identity`` for
    EdDSA); ``pss`` picks RSASSA-PSS there. Raises ConfigError if key and method disagree.
    """
    kind = _key_type(private_key)
    if method == AuthMethod.RSA:
        if kind is not KeyType.RSA:
            raise ConfigError("auth method RSA needs an RSA key")
        return private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1())  # type: ignore
    if method in _CLASSIC_ECDSA:
        curve, digest = _CLASSIC_ECDSA[method]
        if kind is not KeyType.ECDSA or not isinstance(private_key.curve, curve):  # type: ignore
            raise ConfigError(f"auth method {AuthMethod(method).name} needs an ECDSA key on"
                              f" {curve.name}")
        der = private_key.sign(octets, ec.ECDSA(digest()))  # type: ignore[call-arg]
        r, s = decode_dss_signature(der)
        size = (private_key.curve.key_size + 7) // 8  # type: ignore[union-attr]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if method != AuthMethod.DIGITAL_SIGNATURE:
        raise ConfigError(f"auth method {method} is not a signature method")
    if kind in (KeyType.ED25519, KeyType.ED448):
        scheme = SignatureScheme(kind, HashAlgorithm.IDENTITY)
        signature = private_key.sign(octets)  # type: ignore[call-arg]
    else:
        if hash_alg not in _RSA_OIDS:
            raise ConfigError(f"hash {hash_alg} cannot be used with a {kind.value} key")
        scheme = SignatureScheme(kind, HashAlgorithm(hash_alg), pss and kind is KeyType.RSA)
        signature = _sign_with(private_key, scheme, octets)
    ident = scheme.algorithm_identifier()
    return bytes([len(ident)]) + ident + signature


def _sign_with(key: PrivateKey, scheme: SignatureScheme, octets: bytes) -> bytes:
    digest = _HASHES[scheme.hash_alg]()
    if scheme.key_type is KeyType.ECDSA:
        return key.sign(octets, ec.ECDSA(digest))  # type: ignore[call-arg,union-attr]
    if scheme.pss:
        pad = padding.PSS(padding.MGF1(_HASHES[scheme.hash_alg]()), digest.digest_size)
        return key.sign(octets, pad, digest)  # type: ignore[call-arg,union-attr]
    return key.sign(octets, padding.PKCS1v15(), digest)  # type: ignore[call-arg,union-attr]


def parse_signature_auth(auth_data: bytes) -> tuple[SignatureScheme, bytes] | None:
    """Split method-14 AUTH data into (scheme, signature); None if unknown or malformed."""
    if not auth_data:
        return None
    size = auth_data[0]
    ident = bytes(auth_data[1:1 + size])
    scheme = _SCHEMES.get(ident)
    if scheme is None or len(auth_data) <= 1 + size:
        return None
    return scheme, bytes(auth_data[1 + size:])


def verify(public_key_or_cert: PublicKey | x509.Certificate, method: int, auth_data: bytes,
           octets: bytes, *, allowed_hashes: Iterable[int] | None = None) -> bool:
    """Whether ``auth_data`` (the AUTH payload after Auth Method and RESERVED) is a valid
    signature of ``octets`` by this key. ``allowed_hashes`` limits method 14 to the hashes
    we announced. False, never an exception, for anything malformed or mismatched."""
    key = (public_key_or_cert.public_key() if isinstance(public_key_or_cert, x509.Certificate)
           else public_key_or_cert)
    try:
        kind = _key_type(key)
        if method == AuthMethod.RSA:
            if kind is not KeyType.RSA:
                return False
            key.verify(auth_data, octets, padding.PKCS1v15(), hashes.SHA1())  # type: ignore
            return True
        if method in _CLASSIC_ECDSA:
            curve, digest = _CLASSIC_ECDSA[method]
            if kind is not KeyType.ECDSA or not isinstance(key.curve, curve):  # type: ignore
                return False
            size = (key.curve.key_size + 7) // 8  # type: ignore[union-attr]
            if len(auth_data) != 2 * size:
                return False
            r = int.from_bytes(auth_data[:size], "big")
            s = int.from_bytes(auth_data[size:], "big")
            key.verify(encode_dss_signature(r, s), octets,  # type: ignore[call-arg,union-attr]
                       ec.ECDSA(digest()))
            return True
        if method != AuthMethod.DIGITAL_SIGNATURE:
            return False
        parsed = parse_signature_auth(auth_data)
        if parsed is None:
            return False
        scheme, signature = parsed
        if scheme.key_type is not kind:
            return False
        if allowed_hashes is not None and scheme.hash_alg not in set(allowed_hashes):
            return False
        if kind in (KeyType.ED25519, KeyType.ED448):
            key.verify(signature, octets)  # type: ignore[call-arg]
            return True
        digest = _HASHES[scheme.hash_alg]()
        if kind is KeyType.ECDSA:
            key.verify(signature, octets, ec.ECDSA(digest))  # type: ignore[call-arg]
        elif scheme.pss:
            pad = padding.PSS(padding.MGF1(_HASHES[scheme.hash_alg]()), digest.digest_size)
            key.verify(signature, octets, pad, digest)  # type: ignore[call-arg]
        else:
            key.verify(signature, octets, padding.PKCS1v15(), digest)  # type: ignore[call-arg]
        return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, ConfigError):
        return False
