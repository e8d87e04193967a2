"""The Security Association payload (RFC 7296 §3.3): proposals, transforms, attributes.

    SA payload   = Proposal 1 | Proposal 2 | ...            (alternatives: "OR")
    Proposal     = header, SPI, Transform 1 | Transform 2 | ...   (one of each type: "AND")
    Transform    = header, Attribute 1 | ...                 (only Key Length is defined)

Proposals and transforms start with a "Last Substruc" octet: 0 on the last one, 2 before
another proposal (§3.3.1), 3 before another transform (§3.3.2). The codec checks it, the
lengths and the transform count, but not which transforms make sense together: that is
proposal negotiation's job.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Self

from ipseclab.ike.constants import (
    DhId,
    EncrId,
    EsnId,
    IntegId,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformAttributeType,
    TransformType,
    enum_or_int,
)
from ipseclab.ike.payload_base import MalformedMessage, Payload, require

_SUBSTRUC = struct.Struct("!BBH")  # Last Substruc, RESERVED, Length
_PROPOSAL = struct.Struct("!BBHBBBB")  # ... + Proposal Num, Protocol ID, SPI Size, #Transforms
_TRANSFORM = struct.Struct("!BBHBBH")  # ... + Transform Type, RESERVED, Transform ID
_ATTRIBUTE = struct.Struct("!HH")  # AF|Attribute Type, Attribute Value or Length

MORE_PROPOSALS = 2
MORE_TRANSFORMS = 3
_AF = 0x8000  # Attribute Format bit: 1 = TV (2-octet value), 0 = TLV

_TRANSFORM_ID_ENUMS = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.DH: DhId,
    TransformType.ESN: EsnId,
}


@dataclass
class TransformAttribute:
    """One transform attribute (RFC 7296 §3.3.5).

    An ``int`` value is sent in TV format (AF=1, two octets), a ``bytes`` value in TLV format.
    """

    attribute_type: int
    value: int | bytes

    @classmethod
    def key_length(cls, bits: int) -> Self:
        return cls(TransformAttributeType.KEY_LENGTH, bits)

    @classmethod
    def parse_all(cls, data: bytes, offset: int = 0, end: int | None = None) -> list[Self]:
        """The attributes in ``data[offset:end]`` (all of ``data`` by default)."""
        end = len(data) if end is None else end
        attributes = []
        while offset < end:
            require(end - offset >= 4, "transform attribute truncated")
            word, value = _ATTRIBUTE.unpack_from(data, offset)
            offset += 4
            attribute_type = enum_or_int(TransformAttributeType, word & 0x7FFF)
            if word & _AF:
                attributes.append(cls(attribute_type, value))
                continue
            require(attribute_type != TransformAttributeType.KEY_LENGTH,
                    "Key Length attribute must use TV format")
            require(offset + value <= end, "TLV transform attribute overruns its transform")
            attributes.append(cls(attribute_type, data[offset:offset + value]))
            offset += value
        return attributes

    def to_bytes(self) -> bytes:
        if isinstance(self.value, int):
            return _ATTRIBUTE.pack(_AF | self.attribute_type, self.value)
        return _ATTRIBUTE.pack(self.attribute_type, len(self.value)) + self.value


@dataclass
class Transform:
    """One transform substructure (RFC 7296 §3.3.2): a type, an algorithm ID, attributes."""

    transform_type: int
    transform_id: int
    attributes: list[TransformAttribute] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.transform_type = enum_or_int(TransformType, self.transform_type)
        id_enum = _TRANSFORM_ID_ENUMS.get(self.transform_type)
        if id_enum is not None:
            self.transform_id = enum_or_int(id_enum, self.transform_id)

    @classmethod
    def of(cls, transform_type: int, transform_id: int, key_length: int | None = None) -> Self:
        """A transform, with a Key Length attribute if ``key_length`` is given (in bits)."""
        attributes = [] if key_length is None else [TransformAttribute.key_length(key_length)]
        return cls(transform_type, transform_id, attributes)

    @property
    def key_length(self) -> int | None:
        for attribute in self.attributes:
            if attribute.attribute_type == TransformAttributeType.KEY_LENGTH:
                return attribute.value  # type: ignore[return-value]  # always TV
        return None

    @classmethod
    def parse(cls, data: bytes, offset: int = 0, end: int | None = None
              ) -> tuple[Self, int, bool]:
        """Read one transform at ``data[offset:end]``: (transform, its length, more follow?)."""
        end = len(data) if end is None else end
        require(end - offset >= 8, "transform truncated")
        last, _, length, transform_type, _, transform_id = _TRANSFORM.unpack_from(data, offset)
        if last != 0 and last != MORE_TRANSFORMS:
            raise MalformedMessage(f"transform Last Substruc is {last}, not 0 or 3")
        if not 8 <= length <= end - offset:
            raise MalformedMessage(f"transform length {length} out of bounds")
        attributes = (TransformAttribute.parse_all(data, offset + 8, offset + length)
                      if length > 8 else [])
        return cls(transform_type, transform_id, attributes), length, last == MORE_TRANSFORMS

    def to_bytes(self, last: bool) -> bytes:
        body = b"".join(attribute.to_bytes() for attribute in self.attributes)
        header = _TRANSFORM.pack(0 if last else MORE_TRANSFORMS, 0, 8 + len(body),
                                 self.transform_type, 0, self.transform_id)
        return header + body


@dataclass
class Proposal:
    """One proposal substructure (RFC 7296 §3.3.1).

    ``spi`` is empty in the IKE_SA_INIT proposals for the IKE SA, 8 octets when an IKE SA is
    rekeyed, and the 4-octet SPI the sender wants for inbound ESP/AH traffic otherwise.
    """

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.protocol_id = enum_or_int(ProtocolId, self.protocol_id)

    def transforms_of(self, transform_type: int) -> list[Transform]:
        return [t for t in self.transforms if t.transform_type == transform_type]

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> tuple[Self, int, bool]:
        """Read one proposal at ``data[offset:]``: (proposal, its length, more follow?)."""
        require(len(data) - offset >= 8, "proposal truncated")
        last, _, length, number, protocol_id, spi_size, count = (
            _PROPOSAL.unpack_from(data, offset))
        if last != 0 and last != MORE_PROPOSALS:
            raise MalformedMessage(f"proposal Last Substruc is {last}, not 0 or 2")
        if not 8 + spi_size <= length <= len(data) - offset:
            raise MalformedMessage(f"proposal length {length} out of bounds")
        spi = data[offset + 8:offset + 8 + spi_size]
        position, end = offset + 8 + spi_size, offset + length
        transforms = []
        more = position < end
        while more:
            transform, used, more = Transform.parse(data, position, end)
            transforms.append(transform)
            position += used
            require(more == (position < end),
                    "transform Last Substruc disagrees with proposal length")
        if len(transforms) != count:
            raise MalformedMessage(
                f"proposal announces {count} transforms but holds {len(transforms)}")
        return cls(number, protocol_id, spi, transforms), length, last == MORE_PROPOSALS

    def to_bytes(self, last: bool) -> bytes:
        n = len(self.transforms)
        transforms = (t.to_bytes(last=i == n - 1) for i, t in enumerate(self.transforms))
        body = self.spi + b"".join(transforms)
        header = _PROPOSAL.pack(0 if last else MORE_PROPOSALS, 0, 8 + len(body), self.number,
                                self.protocol_id, len(self.spi), n)
        return header + body


@dataclass
class SecurityAssociation(Payload):
    """SA payload (RFC 7296 §3.3): one or more proposals, of which the responder picks one."""

    payload_type = PayloadType.SA
    proposals: list[Proposal] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) > 0, "SA payload without proposals")
        proposals = []
        offset = 0
        more = True
        while more:
            proposal, used, more = Proposal.parse(body, offset)
            proposals.append(proposal)
            offset += used
            require(more == (offset < len(body)),
                    "proposal Last Substruc disagrees with SA payload length")
        return cls(proposals)

    def to_bytes(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.to_bytes(last=i == n - 1) for i, p in enumerate(self.proposals))
