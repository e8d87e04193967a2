"""Traffic Selector payloads TSi and TSr (RFC 7296 §3.13).

A selector is a range of addresses, a range of ports and an IP protocol; a TS payload holds
a list of them, and the Child SA carries the traffic that matches any of them.

    TS Type | IP Protocol ID | Selector Length | Start Port | End Port | Start Addr | End Addr

Selector Length is 16 for IPV4_ADDR_RANGE and 40 for IPV6_ADDR_RANGE (§3.13.1). Selectors of
other types (RFC 4595 Fibre Channel, RFC 9478 security labels) are kept as raw bytes.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Self

from ipseclab.ike.constants import PayloadType, TSType, enum_or_int
from ipseclab.ike.payload_base import MalformedMessage, Payload, require

_TS_HEADER = struct.Struct("!B3x")  # Number of TSs, RESERVED
_SELECTOR = struct.Struct("!BBHHH")  # TS Type, IP Protocol ID, Selector Length, ports
_SELECTOR_HEADER = struct.Struct("!BBH")

_ADDRESS_SIZE = {TSType.IPV4_ADDR_RANGE: 4, TSType.IPV6_ADDR_RANGE: 16}


@dataclass
class TrafficSelector:
    """An address range with a port range and an IP protocol (0 = any), §3.13.1.

    The addresses' family decides the TS Type. For ICMP the ports carry type and code
    (RFC 4301 §4.4.1.1); start port 65535 with end port 0 means OPAQUE.
    """

    start_address: IPv4Address | IPv6Address
    end_address: IPv4Address | IPv6Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> TSType:
        if self.start_address.version == 4:
            return TSType.IPV4_ADDR_RANGE
        return TSType.IPV6_ADDR_RANGE

    @classmethod
    def from_network(cls, network: str, ip_protocol: int = 0, port: int | None = None) -> Self:
        """A selector for a subnet such as ``"10.1.0.0/24"``, all ports or one port."""
        net = ipaddress.ip_network(network, strict=False)
        start, end = (0, 65535) if port is None else (port, port)
        return cls(net[0], net[-1], ip_protocol, start, end)

    def to_bytes(self) -> bytes:
        if self.start_address.version != self.end_address.version:
            raise ValueError("traffic selector mixes IPv4 and IPv6 addresses")
        size = 8 + 2 * _ADDRESS_SIZE[self.ts_type]
        return (_SELECTOR.pack(self.ts_type, self.ip_protocol, size, self.start_port,
                               self.end_port)
                + self.start_address.packed + self.end_address.packed)


@dataclass
class RawSelector:
    """A selector of a type this codec does not decode: its type and the bytes after the
    4-octet selector header."""

    ts_type: int
    data: bytes

    def to_bytes(self) -> bytes:
        return _SELECTOR_HEADER.pack(self.ts_type, 0, 4 + len(self.data)) + self.data


@functools.lru_cache(maxsize=1024)
def address_from_packed(packed: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A 4- or 16-octet address as an address object. Cached: address objects are immutable,
    and a peer names the same few subnets in every exchange."""
    return ipaddress.ip_address(packed)


def _parse_selector(data: bytes, offset: int) -> tuple[TrafficSelector | RawSelector, int]:
    """Read the selector at ``data[offset:]``: (selector, its length)."""
    require(len(data) - offset >= 4, "traffic selector truncated")
    ts_type, ip_protocol, length = _SELECTOR_HEADER.unpack_from(data, offset)
    if not 4 <= length <= len(data) - offset:
        raise MalformedMessage(f"traffic selector length {length} out of bounds")
    address_size = _ADDRESS_SIZE.get(ts_type)  # type: ignore[call-overload]
    if address_size is None:
        # Unknown types: only the type and length are common to all selector formats.
        return RawSelector(enum_or_int(TSType, ts_type), data[offset + 4:offset + length]), length
    if length != 8 + 2 * address_size:
        raise MalformedMessage(f"{TSType(ts_type).name} selector length is {length},"
                               f" not {8 + 2 * address_size}")
    _, _, _, start_port, end_port = _SELECTOR.unpack_from(data, offset)
    start = address_from_packed(data[offset + 8:offset + 8 + address_size])
    end = address_from_packed(data[offset + 8 + address_size:offset + length])
    return TrafficSelector(start, end, ip_protocol, start_port, end_port), length


@dataclass
class TrafficSelectors(Payload):
    """Body shared by TSi and TSr: Number of TSs, RESERVED, selectors."""

    selectors: list[TrafficSelector | RawSelector] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        require(len(body) >= 4, "TS payload shorter than 4 octets")
        (count,) = _TS_HEADER.unpack_from(body)
        selectors = []
        offset = 4
        for _ in range(count):
            selector, used = _parse_selector(body, offset)
            selectors.append(selector)
            offset += used
        require(offset == len(body), "TS payload length disagrees with its Number of TSs")
        return cls(selectors)

    def to_bytes(self) -> bytes:
        return _TS_HEADER.pack(len(self.selectors)) + b"".join(
            s.to_bytes() for s in self.selectors
        )


@dataclass
class TSi(TrafficSelectors):
    """Traffic Selector - Initiator."""

    payload_type = PayloadType.TSi


@dataclass
class TSr(TrafficSelectors):
    """Traffic Selector - Responder."""

    payload_type = PayloadType.TSr
