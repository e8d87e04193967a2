"""IKEv2 payloads (RFC 7296 §3.3-§3.16, RFC 7383 §2.5), one dataclass each.

Every class reads its body with ``parse(body)`` and writes it with ``to_bytes()``, side by
side, so the code can be read next to the RFC's diagrams. The generic payload header
(Next Payload, C bit, Payload Length) is written by :mod:`ipseclab.ike.message`.

Larger payloads live in their own modules and are re-exported here: SA in
:mod:`.sa_payload`, TSi/TSr in :mod:`.ts_payload`, CP in :mod:`.cp_payload`.

Parsing checks structure (lengths, counts, the few sizes the RFC fixes) and raises
:class:`MalformedMessage`; building trusts its fields and raises ``ValueError`` or
``struct.error`` when they cannot be encoded.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

from ipseclab.ike.constants import (
    AuthMethod,
    CertEncoding,
    DhId,
    HashAlgorithm,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    enum_or_int,
)
from ipseclab.ike.cp_payload import ConfigAttribute, Configuration
from ipseclab.ike.payload_base import MalformedMessage, Payload, require
from ipseclab.ike.sa_payload import Proposal, SecurityAssociation, Transform, TransformAttribute
from ipseclab.ike.ts_payload import RawSelector, TrafficSelector, TrafficSelectors, TSi, TSr

__all__ = [
    "PAYLOAD_CLASSES",
    "Authentication",
    "Certificate",
    "CertificateRequest",
    "ConfigAttribute",
    "Configuration",
    "Delete",
    "Eap",
    "Encrypted",
    "EncryptedFragment",
    "IDi",
    "IDr",
    "Identification",
    "KeyExchange",
    "MalformedMessage",
    "Nonce",
    "Notify",
    "Payload",
    "Proposal",
    "RawSelector",
    "SecurityAssociation",
    "TSi",
    "TSr",
    "TrafficSelector",
    "TrafficSelectors",
    "Transform",
    "TransformAttribute",
    "UnknownPayload",
    "VendorId",
    "find_notifies",
]

_TYPE_AND_RESERVED = struct.Struct("!B3x")  # ID, AUTH, CP: one-octet type, 3 reserved octets


@dataclass
class KeyExchange(Payload):
    """KE payload (RFC 7296 §3.4): Diffie-Hellman Group Num, RESERVED (2), public value."""

    payload_type = PayloadType.KE
    group: int
    data: bytes

    _HEADER = struct.Struct("!H2x")

    def __post_init__(self) -> None:
        self.group = enum_or_int(DhId, self.group)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "KE payload shorter than 4 octets")
        (group,) = cls._HEADER.unpack_from(body)
        return cls(group, body[4:])

    def to_bytes(self) -> bytes:
        return self._HEADER.pack(self.group) + self.data


_ID_ADDRESS_SIZE = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}


@dataclass
class Identification(Payload):
    """Body shared by IDi and IDr (RFC 7296 §3.5): ID Type, RESERVED (3), data."""

    id_type: int
    data: bytes

    def __post_init__(self) -> None:
        self.id_type = enum_or_int(IdType, self.id_type)

    @classmethod
    def ip(cls, address: str) -> Self:
        """ID_IPV4_ADDR or ID_IPV6_ADDR from an address string."""
        addr = ipaddress.ip_address(address)
        id_type = IdType.ID_IPV4_ADDR if addr.version == 4 else IdType.ID_IPV6_ADDR
        return cls(id_type, addr.packed)

    @classmethod
    def fqdn(cls, name: str) -> Self:
        return cls(IdType.ID_FQDN, name.encode("ascii"))

    @classmethod
    def rfc822(cls, address: str) -> Self:
        return cls(IdType.ID_RFC822_ADDR, address.encode("ascii"))

    @classmethod
    def der_dn(cls, der: bytes) -> Self:
        """ID_DER_ASN1_DN: the DER encoding of a Distinguished Name, e.g. ``cert.subject``."""
        return cls(IdType.ID_DER_ASN1_DN, der)

    @classmethod
    def key_id(cls, key_id: bytes) -> Self:
        return cls(IdType.ID_KEY_ID, key_id)

    def describe(self) -> str:
        """The identity as a person would write it (hex for binary types)."""
        if self.id_type in _ID_ADDRESS_SIZE:
            return str(ipaddress.ip_address(self.data))
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode("ascii", errors="replace")
        return self.data.hex()

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "ID payload shorter than 4 octets")
        (id_type,) = _TYPE_AND_RESERVED.unpack_from(body)
        data = body[4:]
        size = _ID_ADDRESS_SIZE.get(id_type)  # type: ignore[call-overload]
        if size is not None and len(data) != size:
            raise MalformedMessage(f"{IdType(id_type).name} identity of {len(data)} octets")
        return cls(id_type, data)

    def to_bytes(self) -> bytes:
        return _TYPE_AND_RESERVED.pack(self.id_type) + self.data


@dataclass
class IDi(Identification):
    """Identification - Initiator."""

    payload_type = PayloadType.IDi


@dataclass
class IDr(Identification):
    """Identification - Responder."""

    payload_type = PayloadType.IDr


@dataclass
class Certificate(Payload):
    """CERT payload (RFC 7296 §3.6): Cert Encoding (1), certificate data (DER for X.509)."""

    payload_type = PayloadType.CERT
    encoding: int
    data: bytes

    def __post_init__(self) -> None:
        self.encoding = enum_or_int(CertEncoding, self.encoding)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 1, "CERT payload without Cert Encoding")
        return cls(body[0], body[1:])

    def to_bytes(self) -> bytes:
        return bytes([self.encoding]) + self.data


@dataclass
class CertificateRequest(Payload):
    """CERTREQ payload (RFC 7296 §3.7): Cert Encoding (1), Certification Authority.

    For X509_SIGNATURE the authority field is a list of SHA-1 hashes of trusted CAs' public
    keys (SubjectPublicKeyInfo), 20 octets each: see :attr:`ca_key_hashes`.
    """

    payload_type = PayloadType.CERTREQ
    encoding: int
    authority: bytes = b""

    def __post_init__(self) -> None:
        self.encoding = enum_or_int(CertEncoding, self.encoding)

    @property
    def ca_key_hashes(self) -> list[bytes]:
        require(len(self.authority) % 20 == 0, "CERTREQ authority is not a list of SHA-1 hashes")
        return [self.authority[i:i + 20] for i in range(0, len(self.authority), 20)]

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 1, "CERTREQ payload without Cert Encoding")
        return cls(body[0], body[1:])

    def to_bytes(self) -> bytes:
        return bytes([self.encoding]) + self.authority


@dataclass
class Authentication(Payload):
    """AUTH payload (RFC 7296 §3.8): Auth Method, RESERVED (3), authentication data.

    With DIGITAL_SIGNATURE (RFC 7427 §3) the data starts with a length-prefixed ASN.1
    AlgorithmIdentifier; splitting it is the authentication code's job.
    """

    payload_type = PayloadType.AUTH
    method: int
    data: bytes

    def __post_init__(self) -> None:
        self.method = enum_or_int(AuthMethod, self.method)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "AUTH payload shorter than 4 octets")
        (method,) = _TYPE_AND_RESERVED.unpack_from(body)
        return cls(method, body[4:])

    def to_bytes(self) -> bytes:
        return _TYPE_AND_RESERVED.pack(self.method) + self.data


NONCE_MIN = 16
NONCE_MAX = 256


@dataclass
class Nonce(Payload):
    """Nonce payload Ni/Nr (RFC 7296 §3.9): 16 to 256 octets of random data.

    The bounds are a MUST of §3.9, so both parsing and building enforce them.
    """

    payload_type = PayloadType.NONCE
    data: bytes

    @classmethod
    def parse(cls, body: bytes) -> Self:
        if not NONCE_MIN <= len(body) <= NONCE_MAX:
            raise MalformedMessage(f"nonce of {len(body)} octets, not {NONCE_MIN}..{NONCE_MAX}")
        return cls(body)

    def to_bytes(self) -> bytes:
        if not NONCE_MIN <= len(self.data) <= NONCE_MAX:
            raise ValueError(f"nonce must be {NONCE_MIN}..{NONCE_MAX} octets")
        return self.data


@dataclass
class Notify(Payload):
    """Notify payload N (RFC 7296 §3.10): Protocol ID, SPI Size, Notify Message Type, SPI, data.

    Most notifications concern the IKE SA and have no SPI (protocol 0, SPI size 0); REKEY_SA,
    INVALID_SELECTORS and CHILD_SA_NOT_FOUND name a Child SA by protocol and SPI.
    """

    payload_type = PayloadType.NOTIFY
    notify_type: int
    data: bytes = b""
    protocol_id: int = 0
    spi: bytes = b""

    _HEADER = struct.Struct("!BBH")

    def __post_init__(self) -> None:
        self.notify_type = enum_or_int(NotifyType, self.notify_type)
        self.protocol_id = enum_or_int(ProtocolId, self.protocol_id)

    @property
    def is_error(self) -> bool:
        return self.notify_type < 16384

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "Notify payload shorter than 4 octets")
        protocol_id, spi_size, notify_type = cls._HEADER.unpack_from(body)
        require(4 + spi_size <= len(body), "Notify SPI overruns the payload")
        return cls(notify_type, body[4 + spi_size:], protocol_id, body[4:4 + spi_size])

    def to_bytes(self) -> bytes:
        return (self._HEADER.pack(self.protocol_id, len(self.spi), self.notify_type)
                + self.spi + self.data)

    # Notification data of a few types.

    @classmethod
    def signature_hash_algorithms(cls, algorithms: Iterable[int]) -> Self:
        """RFC 7427 §4: the hash algorithms the sender supports, two octets each."""
        data = b"".join(struct.pack("!H", a) for a in algorithms)
        return cls(NotifyType.SIGNATURE_HASH_ALGORITHMS, data)

    def hash_algorithms(self) -> list[HashAlgorithm | int]:
        """Read SIGNATURE_HASH_ALGORITHMS data (RFC 7427 §4)."""
        require(len(self.data) % 2 == 0, "SIGNATURE_HASH_ALGORITHMS data of odd length")
        return [enum_or_int(HashAlgorithm, a)
                for (a,) in struct.iter_unpack("!H", self.data)]

    @classmethod
    def invalid_ke_payload(cls, group: int) -> Self:
        """RFC 7296 §1.3: the responder's INVALID_KE_PAYLOAD names the group it wants."""
        return cls(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", group))

    def accepted_group(self) -> DhId | int:
        """Read INVALID_KE_PAYLOAD data: the Diffie-Hellman group the responder accepts."""
        require(len(self.data) == 2, "INVALID_KE_PAYLOAD data is not two octets")
        return enum_or_int(DhId, struct.unpack("!H", self.data)[0])


def find_notifies(payloads: Iterable[Payload], notify_type: int | None = None) -> list[Notify]:
    """The Notify payloads among ``payloads``, only those of ``notify_type`` if given."""
    return [p for p in payloads
            if isinstance(p, Notify) and (notify_type is None or p.notify_type == notify_type)]


@dataclass
class Delete(Payload):
    """Delete payload D (RFC 7296 §3.11): Protocol ID, SPI Size, Num of SPIs, SPIs.

    Deleting the IKE SA: protocol IKE, no SPIs. Deleting Child SAs: AH or ESP with the
    4-octet SPIs the *sender* expects inbound.
    """

    payload_type = PayloadType.DELETE
    protocol_id: int
    spi_size: int = 0
    spis: list[bytes] = field(default_factory=list)

    _HEADER = struct.Struct("!BBH")

    def __post_init__(self) -> None:
        self.protocol_id = enum_or_int(ProtocolId, self.protocol_id)

    @classmethod
    def child_sas(cls, protocol_id: int, spis: Iterable[bytes]) -> Self:
        return cls(protocol_id, 4, list(spis))

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "Delete payload shorter than 4 octets")
        protocol_id, spi_size, count = cls._HEADER.unpack_from(body)
        require(spi_size > 0 or count == 0, "Delete payload with SPIs of size zero")
        if len(body) != 4 + spi_size * count:
            raise MalformedMessage(
                f"Delete payload length disagrees with {count} SPIs of {spi_size} octets")
        spis = [body[i:i + spi_size] for i in range(4, len(body), spi_size or 1)]
        return cls(protocol_id, spi_size, spis)

    def to_bytes(self) -> bytes:
        if any(len(spi) != self.spi_size for spi in self.spis):
            raise ValueError(f"every SPI of a Delete payload must be {self.spi_size} octets")
        return self._HEADER.pack(self.protocol_id, self.spi_size, len(self.spis)) + b"".join(
            self.spis
        )


@dataclass
class _Opaque(Payload):
    """A payload whose whole body is one opaque value the codec does not look into."""

    data: bytes

    @classmethod
    def parse(cls, body: bytes) -> Self:
        return cls(body)

    def to_bytes(self) -> bytes:
        return self.data


@dataclass
class VendorId(_Opaque):
    """Vendor ID payload V (RFC 7296 §3.12): an opaque constant, usually a hash."""

    payload_type = PayloadType.VENDOR_ID


@dataclass
class Encrypted(Payload):
    """Encrypted and Authenticated payload SK (RFC 7296 §3.14), carried undecrypted.

    ``body`` is IV || ciphertext (inner payloads, padding, Pad Length) || ICV. ``first_inner``
    is the SK payload's own Next Payload field: the type of the first inner payload. The
    message codec fills it in, because it lives in the generic header.
    """

    payload_type = PayloadType.SK
    first_inner: int = PayloadType.NONE
    body: bytes = b""

    @classmethod
    def parse(cls, body: bytes) -> Self:
        return cls(body=body)

    def to_bytes(self) -> bytes:
        return self.body


@dataclass
class EncryptedFragment(Payload):
    """Encrypted Fragment payload SKF (RFC 7383 §2.5): Fragment Number, Total Fragments, then
    IV || ciphertext || ICV like SK.

    ``first_inner`` (the Next Payload field) is the first inner payload type in fragment 1
    and zero in the others. Fragment numbers count from 1 up to Total Fragments.
    """

    payload_type = PayloadType.SKF
    fragment_number: int = 1
    total_fragments: int = 1
    first_inner: int = PayloadType.NONE
    body: bytes = b""

    _HEADER = struct.Struct("!HH")

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "SKF payload shorter than 4 octets")
        number, total = cls._HEADER.unpack_from(body)
        if not 1 <= number <= total:
            raise MalformedMessage(f"fragment {number} of {total}")
        return cls(number, total, body=body[4:])

    def to_bytes(self) -> bytes:
        return self._HEADER.pack(self.fragment_number, self.total_fragments) + self.body


@dataclass
class Eap(_Opaque):
    """EAP payload (RFC 7296 §3.16): one EAP message (RFC 3748), kept raw."""

    payload_type = PayloadType.EAP


@dataclass
class UnknownPayload(Payload):
    """A payload whose type this codec does not know, kept so it can be shown and re-sent.

    Only a non-critical one survives parsing (RFC 7296 §2.5).
    """

    payload_type: int  # type: ignore[misc]  # an instance field here, a class constant elsewhere
    body: bytes = b""

    @classmethod
    def parse(cls, body: bytes) -> Self:
        raise TypeError("UnknownPayload needs its type: build it as UnknownPayload(type, body)")

    def to_bytes(self) -> bytes:
        return self.body


PAYLOAD_CLASSES: dict[int, type[Payload]] = {
    cls.payload_type: cls
    for cls in (SecurityAssociation, KeyExchange, IDi, IDr, Certificate, CertificateRequest,
                Authentication, Nonce, Notify, Delete, VendorId, TSi, TSr, Encrypted,
                Configuration, Eap, EncryptedFragment)
}
