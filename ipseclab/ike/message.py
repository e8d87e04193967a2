"""IKE messages (RFC 7296 §3.1) and the chain of payloads they carry (§3.2).

    IKE SA Initiator's SPI (8) | IKE SA Responder's SPI (8)
    Next Payload | MjVer|MnVer | Exchange Type | Flags | Message ID (4) | Length (4)
    payload, payload, ...   each: Next Payload | C | RESERVED | Payload Length (2) | body

Each payload's Next Payload field names the type of the payload after it, so the chain is
read front to back. The SK payload (§3.14) and SKF payload (RFC 7383 §2.5) are always
last, and their Next Payload field names the first payload *inside* the ciphertext:
:func:`parse_payload_chain` reads that inner chain once it has been decrypted.

Parsing is strict: the header's Length must equal the datagram's, every payload must fit,
and nothing may follow the last one. An unknown payload type is skipped unless its critical
bit is set, in which case the message is rejected with UNSUPPORTED_CRITICAL_PAYLOAD (§2.5).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from ipseclab.ike.constants import ExchangeType, HeaderFlag, NotifyType, PayloadType, enum_or_int
from ipseclab.ike.payload_base import MalformedMessage, Payload, require
from ipseclab.ike.payloads import (
    PAYLOAD_CLASSES,
    Encrypted,
    EncryptedFragment,
    Notify,
    UnknownPayload,
    find_notifies,
)

__all__ = [
    "HEADER_SIZE",
    "MalformedMessage",
    "Message",
    "build_payload_chain",
    "parse_message",
    "parse_payload_chain",
]

_HEADER = struct.Struct("!8s8sBBBBII")
_GENERIC = struct.Struct("!BBH")  # Next Payload, C bit + RESERVED, Payload Length
HEADER_SIZE = _HEADER.size  # 28
GENERIC_HEADER_SIZE = _GENERIC.size  # 4
VERSION = 0x20  # major version 2, minor version 0
_CRITICAL = 0x80
_ENCRYPTED = (Encrypted, EncryptedFragment)  # SK and SKF: always the last payload

P = TypeVar("P", bound=Payload)

# Every value of the Flags octet as a HeaderFlag, made once: HeaderFlag(value) costs an enum
# call, and every message built or parsed needs one.
_FLAGS = {value: HeaderFlag(value) for value in range(256)}


@dataclass
class Message:
    """One IKE message. The Next Payload and Length header fields are computed from
    ``payloads`` when the message is written."""

    spi_i: bytes
    spi_r: bytes = bytes(8)
    exchange_type: int = ExchangeType.IKE_SA_INIT
    flags: HeaderFlag | int = 0
    message_id: int = 0
    payloads: list[Payload] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.exchange_type = enum_or_int(ExchangeType, self.exchange_type)
        flags = _FLAGS.get(self.flags)
        self.flags = flags if flags is not None else HeaderFlag(self.flags)

    @property
    def is_initiator(self) -> bool:
        """I flag: sent by the original initiator of the IKE SA."""
        return HeaderFlag.I in self.flags

    @property
    def is_response(self) -> bool:
        """R flag: this message answers a request with the same Message ID."""
        return HeaderFlag.R in self.flags

    def find(self, payload_class: type[P]) -> P | None:
        """The first payload of ``payload_class``, or None."""
        for payload in self.payloads:
            if isinstance(payload, payload_class):
                return payload
        return None

    def notifies(self, notify_type: int | None = None) -> list[Notify]:
        """The Notify payloads, only those of ``notify_type`` if given."""
        return find_notifies(self.payloads, notify_type)

    def to_bytes(self) -> bytes:
        first_type, chain = build_payload_chain(self.payloads)
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ValueError("IKE SPIs are 8 octets")
        header = _HEADER.pack(self.spi_i, self.spi_r, first_type, VERSION, self.exchange_type,
                              self.flags, self.message_id, HEADER_SIZE + len(chain))
        return header + chain


def parse_message(data: bytes) -> Message:
    """Read one IKE message (a whole UDP payload, without the RFC 3948 non-ESP marker)."""
    data = bytes(data)
    require(len(data) >= HEADER_SIZE, f"{len(data)} octets are too short for an IKE header")
    spi_i, spi_r, first_type, version, exchange_type, flags, message_id, length = (
        _HEADER.unpack_from(data)
    )
    if version >> 4 != 2:
        # §3.1: a version above 2 gets INVALID_MAJOR_VERSION; the minor version is ignored.
        raise MalformedMessage(f"IKE major version {version >> 4}, not 2",
                               notify=NotifyType.INVALID_MAJOR_VERSION)
    require(length == len(data), f"IKE header says {length} octets, datagram has {len(data)}")
    payloads = _parse_chain(first_type, data[HEADER_SIZE:], HEADER_SIZE, outer=True)
    # Bits other than I, V and R "MUST be ignored on receipt" (§3.1).
    return Message(spi_i, spi_r, exchange_type, flags & 0x38, message_id, payloads)


def parse_payload_chain(first_type: int, data: bytes) -> list[Payload]:
    """Read the payloads inside a decrypted SK or SKF payload.

    ``first_type`` is the SK payload's Next Payload field, ``data`` the plaintext without
    padding and Pad Length. An SK payload inside SK is malformed.
    """
    return _parse_chain(first_type, bytes(data), 0, outer=False)


def _parse_chain(next_type: int, data: bytes, base: int, *, outer: bool) -> list[Payload]:
    """Walk the chain; ``base`` is where ``data`` starts in the message, for error texts.

    Error texts are built only when a check fails: this runs for every payload received."""
    payloads: list[Payload] = []
    offset = 0
    end = len(data)
    while next_type != PayloadType.NONE:
        if end - offset < GENERIC_HEADER_SIZE:
            _malformed(next_type, base + offset, "generic header truncated")
        following, flags, length = _GENERIC.unpack_from(data, offset)
        critical = bool(flags & _CRITICAL)
        if length < GENERIC_HEADER_SIZE:
            _malformed(next_type, base + offset, f"Payload Length {length} is below 4")
        if offset + length > end:
            _malformed(next_type, base + offset, f"Payload Length {length} overruns message")
        body = data[offset + GENERIC_HEADER_SIZE:offset + length]
        payload_class = PAYLOAD_CLASSES.get(next_type)
        encrypted = payload_class in _ENCRYPTED
        if payload_class is None and critical:
            raise MalformedMessage(f"{_at(next_type, base + offset)}: unknown payload type"
                                   " marked critical",
                                   notify=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                                   data=bytes([next_type]))
        if encrypted:
            if not outer:
                _malformed(next_type, base + offset,
                           "encrypted payload inside an encrypted payload")
            if offset + length != end:
                _malformed(next_type, base + offset, "encrypted payload is not the last one")
        try:
            payload = (UnknownPayload(next_type, body) if payload_class is None
                       else payload_class.parse(body))
        except MalformedMessage as error:
            raise MalformedMessage(f"{_at(next_type, base + offset)}: {error}",
                                   notify=error.notify, data=error.data) from None
        if encrypted:
            payload.first_inner = following  # type: ignore[attr-defined]
            following = PayloadType.NONE
        payload.critical = critical
        payloads.append(payload)
        offset += length
        next_type = following
    require(offset == end, f"{end - offset} octets follow the last payload")
    return payloads


def _at(payload_type: int, offset: int) -> str:
    return f"{_type_name(payload_type)} payload at offset {offset}"


def _malformed(payload_type: int, offset: int, problem: str) -> NoReturn:
    raise MalformedMessage(f"{_at(payload_type, offset)}: {problem}")


def build_payload_chain(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Write ``payloads`` with their generic headers: (type of the first one, bytes).

    For the inner payloads of SK/SKF, the first type goes into the SK payload's Next Payload
    field (``Encrypted.first_inner``) and the bytes are what gets padded and encrypted.
    """
    parts = []
    for index, payload in enumerate(payloads):
        if isinstance(payload, _ENCRYPTED):
            if index != len(payloads) - 1:
                raise ValueError("the SK/SKF payload must be the last payload (RFC 7296 §3.14)")
            following = payload.first_inner
        elif index + 1 < len(payloads):
            following = payloads[index + 1].payload_type
        else:
            following = PayloadType.NONE
        body = payload.to_bytes()
        length = GENERIC_HEADER_SIZE + len(body)
        if length > 0xFFFF:
            raise ValueError(f"{_type_name(payload.payload_type)} payload of {length} octets")
        flags = _CRITICAL if payload.critical else 0
        parts.append(_GENERIC.pack(following, flags, length) + body)
    first_type = payloads[0].payload_type if payloads else PayloadType.NONE
    return first_type, b"".join(parts)


def _type_name(payload_type: int) -> str:
    known = enum_or_int(PayloadType, payload_type)
    return known.name if isinstance(known, PayloadType) else f"type-{payload_type}"
