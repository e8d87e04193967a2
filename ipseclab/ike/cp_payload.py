"""The Configuration payload CP (RFC 7296 §3.15): how a remote-access client asks for an
internal address and DNS servers, and how the gateway answers.

    CFG Type | RESERVED (3) | attributes
    attribute = R | Attribute Type (15 bits) | Length (2) | Value

An attribute with an empty value in a CFG_REQUEST means "please give me one" (§3.15.1).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Self

from ipseclab.ike.constants import CfgType, ConfigAttributeType, PayloadType, enum_or_int
from ipseclab.ike.payload_base import Payload, require

_CP_HEADER = struct.Struct("!B3x")
_ATTRIBUTE = struct.Struct("!HH")


@dataclass
class ConfigAttribute:
    """One configuration attribute; ``value`` empty for a request."""

    attribute_type: int
    value: bytes = b""

    def __post_init__(self) -> None:
        self.attribute_type = enum_or_int(ConfigAttributeType, self.attribute_type)

    @classmethod
    def address(cls, attribute_type: int, address: str) -> Self:
        """An address attribute such as INTERNAL_IP4_ADDRESS or INTERNAL_IP4_DNS.

        INTERNAL_IP6_ADDRESS and INTERNAL_IP6_SUBNET carry a prefix length after the address;
        pass them as ``"2001:db8::1/64"``.
        """
        if "/" in address and ":" in address:
            iface = ipaddress.IPv6Interface(address)
            return cls(attribute_type, iface.ip.packed + bytes([iface.network.prefixlen]))
        return cls(attribute_type, ipaddress.ip_address(address).packed)

    def as_address(self) -> IPv4Address | IPv6Address | None:
        """The value read as an address (first 4 or 16 octets), None if it is not one."""
        if len(self.value) == 4:
            return IPv4Address(self.value)
        if len(self.value) in (16, 17):
            return IPv6Address(self.value[:16])
        return None


@dataclass
class Configuration(Payload):
    """CP payload: a CFG Type and a list of attributes."""

    payload_type = PayloadType.CP
    cfg_type: int = CfgType.CFG_REQUEST
    attributes: list[ConfigAttribute] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cfg_type = enum_or_int(CfgType, self.cfg_type)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "CP payload shorter than 4 octets")
        (cfg_type,) = _CP_HEADER.unpack_from(body)
        attributes = []
        offset = 4
        while offset < len(body):
            require(len(body) - offset >= 4, "configuration attribute truncated")
            word, length = _ATTRIBUTE.unpack_from(body, offset)
            offset += 4
            require(offset + length <= len(body), "configuration attribute overruns CP payload")
            attributes.append(ConfigAttribute(word & 0x7FFF, body[offset:offset + length]))
            offset += length
        return cls(cfg_type, attributes)

    def to_bytes(self) -> bytes:
        return _CP_HEADER.pack(self.cfg_type) + b"".join(
            _ATTRIBUTE.pack(a.attribute_type, len(a.value)) + a.value for a in self.attributes
        )
