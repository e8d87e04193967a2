"""Packet fields and traffic selectors (RFC 4301 §4.4.1, RFC 7296 §3.13.1).

A selector says which packets an SPD entry or an SA is for: local and remote address range,
next-layer protocol, and local and remote port range (for ICMP: type and code).

Three pieces live here:

* :func:`parse_fields` reads the selector fields out of a raw IPv4 or IPv6 packet into a
  :class:`PacketFields`. Addresses are plain ``int`` (the address as a big-endian number),
  because matching is then two integer comparisons per side; ``src_addr``/``dst_addr`` give
  the ``ipaddress`` objects for display.
* :class:`TrafficSelector` is one side, exactly what one IKEv2 traffic selector carries
  (RFC 7296 §3.13.1): address range, protocol (0 = any), port range.
* :class:`Selector` pairs a local and a remote side. It has no direction of its own, like
  ``ip xfrm policy ... sel src LOCAL dst REMOTE``: :meth:`Selector.matches` is told the
  direction. For ``out`` the packet's source is the *local* side; for ``in`` and ``fwd``
  (a decapsulated packet on its way in) the packet's source is the *remote* side.

Ports. ANY is the range 0-65535 and matches every packet, with or without ports.
OPAQUE (RFC 4301 §4.4.1, encoded as start 65535 / end 0 as in RFC 7296 §3.13.1) means "the
port is not available": it matches only packets without ports, i.e. non-initial fragments.
A specific range never matches a non-initial fragment (RFC 4301 §7: we keep no fragment state).

ICMP (RFC 4301 §4.4.1.1, RFC 7296 §3.13.1): type and code travel in the port fields as one
16-bit value, type in the high byte and code in the low byte. A packet matches if its
``type << 8 | code`` lies in the port range of *both* sides; :meth:`Selector.parse` puts the
same range on both sides, so any peer convention intersects correctly. In swanctl.conf's
``[icmp/PORT]`` a number below 256 is a type with code 0, as strongSwan reads it
(``[icmp/8]`` is echo request, code 0; ``[icmp/3-5]`` runs from type 3 code 0 to type 5
code 0); a larger one is the 16-bit value itself, and ``TYPE:CODE`` (ipseclab's own
spelling) names both: ``[icmp/3:0-3:255]`` is every code of type 3.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ipseclab.errors import ConfigError, IpsecLabError

__all__ = [
    "ANY_PORTS",
    "OPAQUE_PORTS",
    "PROTOCOLS",
    "Direction",
    "IkeTs",
    "MalformedPacket",
    "PacketFields",
    "Selector",
    "SelectorError",
    "TrafficSelector",
    "intersect",
    "narrow",
    "parse_address_range",
    "parse_fields",
    "parse_protocol",
]


class MalformedPacket(IpsecLabError, ValueError):
    """A packet too short or inconsistent to read its selector fields from."""


class SelectorError(ConfigError, ValueError):
    """A selector that cannot exist (bad range, ports without a protocol, mixed families)."""


class Direction(enum.StrEnum):
    """Direction of a packet relative to this node, as in Linux xfrm policies."""

    OUT = "out"
    IN = "in"
    FWD = "fwd"


PROTOCOLS: dict[str, int] = {
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "icmp6": 58,
    "sctp": 132,
}
_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6",
                132: "sctp"}

# Protocols whose header starts with two 16-bit ports, and the length of their fixed header:
# TCP, UDP, DCCP, SCTP, UDP-Lite.
_PORT_HEADER_LEN = {6: 20, 17: 8, 33: 12, 132: 12, 136: 8}
_ICMP_PROTOCOLS = frozenset({1, 58})
_ICMP_HEADER_LEN = 4  # type, code, checksum: all we read

# IPv6 extension headers skipped to reach the upper-layer protocol (RFC 8200 §4).
_HOP_BY_HOP, _ROUTING, _FRAGMENT, _DEST_OPTS = 0, 43, 44, 60

ANY_PORTS = (0, 0xFFFF)
OPAQUE_PORTS = (0xFFFF, 0)

_MAX_ADDR = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
_TS_TYPE = {4: 7, 6: 8}  # TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE (RFC 7296 §3.13.1)
_TS_VERSION = {7: 4, 8: 6}

_V4_HEADER = struct.Struct("!BxHxxHxBxxII")  # ver/ihl, total length, flags/offset, proto, src, dst
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")


# -- packet fields ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PacketFields:
    """The selector fields of one IP packet (RFC 4301 §4.4.1.1).

    ``src``/``dst`` are integers (``int(ipaddress.ip_address(...))``); ``proto`` is the
    upper-layer protocol after IPv6 extension headers. ``sport``/``dport`` are None for
    protocols without ports and for non-initial fragments; ``icmp_type``/``icmp_code`` are
    set for ICMP and ICMPv6 only. ``fragment`` is True for a non-initial fragment, whose
    ports are OPAQUE.
    """

    version: int
    src: int
    dst: int
    proto: int
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    fragment: bool = False

    def flow(self) -> tuple:
        """All the fields as one hashable value: packets with equal flows match the same
        selectors (the SPD remembers its lookups by it)."""
        return (self.version, self.src, self.dst, self.proto, self.sport, self.dport,
                self.icmp_type, self.icmp_code, self.fragment)

    @property
    def src_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return _address(self.version, self.src)

    @property
    def dst_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return _address(self.version, self.dst)

    def __str__(self) -> str:
        name = _PROTO_NAMES.get(self.proto, str(self.proto))
        if self.fragment:
            extra = " (non-initial fragment)"
        elif self.sport is not None:
            extra = f" {self.sport} -> {self.dport}"
        elif self.icmp_type is not None:
            extra = f" type {self.icmp_type} code {self.icmp_code}"
        else:
            extra = ""
        return f"{self.src_addr} -> {self.dst_addr} {name}{extra}"


def parse_fields(packet: bytes | bytearray | memoryview) -> PacketFields:
    """Read the selector fields of a raw IPv4 or IPv6 packet.

    Raises :class:`MalformedPacket` if the header is truncated or inconsistent. Checksums are
    not verified: the packet came from the local stack or was already authenticated.
    """
    n = len(packet)
    if n == 0:
        raise MalformedPacket("empty packet")
    version = packet[0] >> 4
    if version == 4:
        return _parse_v4(packet, n)
    if version == 6:
        return _parse_v6(packet, n)
    raise MalformedPacket(f"IP version {version} is neither 4 nor 6")


def _parse_v4(packet: bytes | bytearray | memoryview, n: int) -> PacketFields:
    if n < 20:
        raise MalformedPacket(f"IPv4 header needs 20 bytes, packet has {n}")
    vihl, total, frag, proto, src, dst = _V4_HEADER.unpack_from(packet)
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or total < ihl or total > n:
        raise MalformedPacket(f"IPv4 header length {ihl} / total length {total} / {n} bytes")
    if frag & 0x1FFF:
        return PacketFields(4, src, dst, proto, fragment=True)
    return _upper_layer(4, src, dst, proto, packet, ihl, total)


def _parse_v6(packet: bytes | bytearray | memoryview, n: int) -> PacketFields:
    if n < 40:
        raise MalformedPacket(f"IPv6 header needs 40 bytes, packet has {n}")
    end = 40 + _U16.unpack_from(packet, 4)[0]
    if end > n:
        raise MalformedPacket(f"IPv6 payload length runs past the packet ({end} > {n})")
    nh = packet[6]
    src = int.from_bytes(packet[8:24], "big")
    dst = int.from_bytes(packet[24:40], "big")
    off = 40
    while nh in (_HOP_BY_HOP, _ROUTING, _DEST_OPTS, _FRAGMENT):
        if end - off < 8:
            raise MalformedPacket(f"IPv6 extension header {nh} truncated")
        if nh == _FRAGMENT:
            fragment_offset = _U16.unpack_from(packet, off + 2)[0] >> 3
            nh = packet[off]
            off += 8
            if fragment_offset:
                return PacketFields(6, src, dst, nh, fragment=True)
        else:
            hlen = (packet[off + 1] + 1) * 8
            if off + hlen > end:
                raise MalformedPacket(f"IPv6 extension header {nh} runs past the packet")
            nh = packet[off]
            off += hlen
    return _upper_layer(6, src, dst, nh, packet, off, end)


def _upper_layer(
    version: int, src: int, dst: int, proto: int,
    packet: bytes | bytearray | memoryview, off: int, end: int,
) -> PacketFields:
    need = _PORT_HEADER_LEN.get(proto)
    if need is not None:
        if end - off < need:
            raise MalformedPacket(f"protocol {proto} header truncated ({end - off} < {need} bytes)")
        sport, dport = _PORTS.unpack_from(packet, off)
        return PacketFields(version, src, dst, proto, sport, dport)
    if proto in _ICMP_PROTOCOLS:
        if end - off < _ICMP_HEADER_LEN:
            raise MalformedPacket(f"ICMP header truncated ({end - off} bytes)")
        return PacketFields(version, src, dst, proto, icmp_type=packet[off],
                            icmp_code=packet[off + 1])
    return PacketFields(version, src, dst, proto)


def _address(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


# -- one side: a traffic selector ------------------------------------------------------------------


class IkeTs(NamedTuple):
    """One traffic selector as plain fields, in the order of RFC 7296 §3.13.1."""

    ts_type: int  # 7 = TS_IPV4_ADDR_RANGE, 8 = TS_IPV6_ADDR_RANGE
    proto: int
    start_port: int
    end_port: int
    start_addr: bytes
    end_addr: bytes


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One side of a selector: what one IKEv2 traffic selector carries (RFC 7296 §3.13.1).

    ``start``/``end`` are addresses as integers, inclusive. ``proto`` 0 means any protocol,
    and then the ports must be ANY. ``port_start``/``port_end`` are inclusive; (0, 65535) is
    ANY and (65535, 0) is OPAQUE. For ICMP the ports hold ``type << 8 | code``.
    """

    version: int
    start: int
    end: int
    proto: int = 0
    port_start: int = 0
    port_end: int = 0xFFFF

    def __post_init__(self) -> None:
        top = _MAX_ADDR.get(self.version)
        if top is None:
            raise SelectorError(f"IP version {self.version} is neither 4 nor 6")
        if not 0 <= self.start <= self.end <= top:
            raise SelectorError(f"address range {self.start}..{self.end} is empty or too large")
        if not 0 <= self.proto <= 255:
            raise SelectorError(f"protocol {self.proto} is not 0..255")
        ports = (self.port_start, self.port_end)
        if not (0 <= self.port_start <= 0xFFFF and 0 <= self.port_end <= 0xFFFF):
            raise SelectorError(f"port range {ports} is not 0..65535")
        if ports != ANY_PORTS:
            if ports != OPAQUE_PORTS and self.port_start > self.port_end:
                raise SelectorError(f"port range {self.port_start}-{self.port_end} is empty")
            if self.proto not in _PORT_HEADER_LEN and self.proto not in _ICMP_PROTOCOLS:
                name = _PROTO_NAMES.get(self.proto, str(self.proto))
                raise SelectorError(f"ports need tcp, udp, sctp or icmp, not protocol {name}")

    # constructors

    @classmethod
    def any(cls, version: int = 4) -> TrafficSelector:
        """Every address of the family, any protocol, any port."""
        return cls(version, 0, _MAX_ADDR[version])

    @classmethod
    def parse(cls, text: str) -> TrafficSelector:
        """Read the swanctl.conf ``local_ts``/``remote_ts`` form.

        ``ADDRESS[PROTO/PORT]`` where ADDRESS is a CIDR (``10.1.0.0/24``), one address, a range
        (``10.1.0.5-10.1.0.9``) or ``%any`` / ``%any6``; PROTO a name or number; PORT a number,
        a range ``1000-2000``, ``%any`` or ``%opaque``. For ICMP, each end of PORT is a type
        (code 0, as strongSwan reads it), ``TYPE:CODE``, or a 16-bit value of 256 and up
        (module docstring). Examples: ``10.1.0.0/24[tcp/80]``, ``::/0[icmpv6/128]``.
        """
        text = text.strip()
        spec = ""
        if text.endswith("]"):
            bracket = text.find("[")
            if bracket < 0:
                raise SelectorError("']' without '['", token=text)
            text, spec = text[:bracket].strip(), text[bracket + 1 : -1].strip()
        version, start, end = _parse_addresses(text)
        if not spec:
            return cls(version, start, end)
        proto_text, _, port_text = spec.partition("/")
        proto = parse_protocol(proto_text)
        ports = _parse_ports(proto, port_text) if port_text else ANY_PORTS
        return cls(version, start, end, proto, *ports)

    @classmethod
    def from_ike(cls, ts: IkeTs | tuple[int, int, int, int, bytes, bytes]) -> TrafficSelector:
        """Build from the plain fields of an IKEv2 traffic selector payload entry."""
        ts_type, proto, start_port, end_port, start_addr, end_addr = ts
        version = _TS_VERSION.get(ts_type)
        if version is None:
            raise SelectorError(f"traffic selector type {ts_type} is not an address range")
        size = 4 if version == 4 else 16
        if len(start_addr) != size or len(end_addr) != size:
            raise SelectorError(f"IPv{version} traffic selector addresses must be {size} bytes")
        return cls(version, int.from_bytes(start_addr, "big"), int.from_bytes(end_addr, "big"),
                   proto, start_port, end_port)

    # views

    def to_ike(self) -> IkeTs:
        """The plain fields of an IKEv2 traffic selector (RFC 7296 §3.13.1)."""
        size = 4 if self.version == 4 else 16
        return IkeTs(_TS_TYPE[self.version], self.proto, self.port_start, self.port_end,
                     self.start.to_bytes(size, "big"), self.end.to_bytes(size, "big"))

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The address range as the fewest CIDR prefixes (what a kernel policy needs)."""
        return list(ipaddress.summarize_address_range(
            _address(self.version, self.start), _address(self.version, self.end)))

    @property
    def any_port(self) -> bool:
        return self.port_start == 0 and self.port_end == 0xFFFF

    @property
    def opaque(self) -> bool:
        return self.port_start == 0xFFFF and self.port_end == 0

    def port_matches(self, value: int | None) -> bool:
        """Does a packet's port (or ICMP type/code value; None if it has none) fit this side?"""
        if self.port_start == 0 and self.port_end == 0xFFFF:
            return True
        if value is None:
            return self.port_start == 0xFFFF and self.port_end == 0
        return self.port_start <= value <= self.port_end

    def contains(self, other: TrafficSelector) -> bool:
        """True if every packet ``other`` selects is selected by this side too."""
        return self.intersect(other) == other

    def intersect(self, other: TrafficSelector) -> TrafficSelector | None:
        """The narrowest side selecting what both select, or None (RFC 7296 §2.9 narrowing)."""
        if self.version != other.version:
            return None
        start, end = max(self.start, other.start), min(self.end, other.end)
        if start > end:
            return None
        if self.proto == 0:
            proto = other.proto
        elif other.proto in (0, self.proto):
            proto = self.proto
        else:
            return None
        ports = _intersect_ports((self.port_start, self.port_end),
                                 (other.port_start, other.port_end))
        if ports is None:
            return None
        return TrafficSelector(self.version, start, end, proto, *ports)

    def address_text(self) -> str:
        """The address range as written in swanctl.conf: CIDR if it is one, else ``a-b``."""
        first, last = _address(self.version, self.start), _address(self.version, self.end)
        nets = self.networks()
        if len(nets) == 1:
            return str(nets[0])
        return f"{first}-{last}"

    def port_text(self) -> str:
        """``tcp/80``, ``tcp/1000-2000``, ``icmp/8`` (type 8, code 0), ``icmp/3:4``,
        ``icmp/3:0-3:255``, ``udp/%opaque``, ``tcp``: what :meth:`parse` reads back."""
        name = _PROTO_NAMES.get(self.proto, str(self.proto))
        if self.any_port:
            return name
        if self.opaque:
            return f"{name}/%opaque"
        lo, hi = self.port_start, self.port_end
        if self.proto in _ICMP_PROTOCOLS:
            if lo == hi:
                return f"{name}/{_icmp_text(lo)}"
            if (lo | hi) & 0xFF == 0:
                return f"{name}/{lo >> 8}-{hi >> 8}"
            return f"{name}/{lo >> 8}:{lo & 0xFF}-{hi >> 8}:{hi & 0xFF}"
        return f"{name}/{lo}" if lo == hi else f"{name}/{lo}-{hi}"

    def __str__(self) -> str:
        if self.proto == 0:
            return self.address_text()
        return f"{self.address_text()}[{self.port_text()}]"


def parse_protocol(text: str | int) -> int:
    """A protocol name (tcp, udp, icmp, icmpv6, gre, esp, ah, sctp) or number, 0 = any."""
    if isinstance(text, int):
        value = text
    else:
        key = text.strip().lower()
        if key in ("", "%any", "any"):
            return 0
        if key in PROTOCOLS:
            return PROTOCOLS[key]
        if not key.isdigit():
            raise SelectorError(f"unknown protocol; use one of {', '.join(PROTOCOLS)} or a number",
                                token=text)
        value = int(key)
    if not 0 <= value <= 255:
        raise SelectorError(f"protocol {value} is not 0..255", token=str(text))
    return value


def parse_address_range(text: str) -> tuple[int, int, int] | None:
    """(IP version, first, last address as ints) of an address, a CIDR or a range ``A-B``.

    None when ``text`` is not written as an address at all (the PAD then reads it as an
    FQDN, RFC 4301 §4.4.3.1: ``my-gw.example`` has a '-' but no address in it). A range of two
    addresses that cannot exist (mixed families, first after last) raises SelectorError.
    """
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return net.version, int(net.network_address), int(net.broadcast_address)
        if "-" in text:
            first_text, last_text = text.split("-", 1)
            first = ipaddress.ip_address(first_text.strip())
            last = ipaddress.ip_address(last_text.strip())
        else:
            addr = ipaddress.ip_address(text)
            return addr.version, int(addr), int(addr)
    except ValueError:
        return None
    if first.version != last.version:
        raise SelectorError("range mixes IPv4 and IPv6", token=text)
    if int(first) > int(last):
        raise SelectorError("range starts after it ends", token=text)
    return first.version, int(first), int(last)


def _parse_addresses(text: str) -> tuple[int, int, int]:
    lowered = text.lower()
    if lowered in ("%any", "%any4", "0.0.0.0/0"):
        return 4, 0, _MAX_ADDR[4]
    if lowered in ("%any6", "::/0"):
        return 6, 0, _MAX_ADDR[6]
    found = parse_address_range(text)
    if found is None:
        raise SelectorError("not an address, CIDR or address range", token=text)
    return found


def _parse_port_number(text: str, whole: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFF:
        raise SelectorError("port must be a number 0..65535", token=whole)
    return int(text)


def _parse_ports(proto: int, text: str | int | tuple[int, int]) -> tuple[int, int]:
    """Port spec of one side: number, ``lo-hi``, a service name (``http``, from
    /etc/services, as strongSwan takes it), ``%any``, ``%opaque``, or ICMP ``type[:code]``."""
    if isinstance(text, tuple):
        return text
    if isinstance(text, int):
        return (text, text)
    spec = text.strip().lower()
    if spec in ("%any", "any"):
        return ANY_PORTS
    if spec in ("%opaque", "opaque"):
        return OPAQUE_PORTS
    if spec[:1].isalpha() and proto not in _ICMP_PROTOCOLS:
        try:
            port = socket.getservbyname(spec)
        except OSError:
            raise SelectorError(f"unknown port or service name '{spec}'", token=text) from None
        return (port, port)
    icmp = proto in _ICMP_PROTOCOLS
    value = _icmp_value if icmp else _parse_port_number
    lo_text, dash, hi_text = spec.partition("-")
    lo = value(lo_text, text)
    hi = value(hi_text, text) if dash else lo
    if lo > hi:
        raise SelectorError(f"{'ICMP' if icmp else 'port'} range starts after it ends",
                            token=text)
    return (lo, hi)


def _icmp_value(text: str, whole: str) -> int:
    """One end of an ICMP ``[icmp/PORT]`` range as the 16-bit ``type << 8 | code``."""
    type_text, colon, code_text = text.partition(":")
    number = _parse_port_number(type_text, whole)
    if colon:
        code = _parse_port_number(code_text, whole)
        if number > 255 or code > 255:
            raise SelectorError("ICMP type and code are 0..255", token=whole)
        return number << 8 | code
    return number << 8 if number < 256 else number  # strongSwan: a type means code 0


def _icmp_text(value: int) -> str:
    """One end of an ICMP range as :func:`_icmp_value` reads it back."""
    return str(value >> 8) if value & 0xFF == 0 else f"{value >> 8}:{value & 0xFF}"


def _icmp_ports(icmp_type: int | None, icmp_code: int | None) -> tuple[int, int]:
    if icmp_type is None:
        if icmp_code is not None:
            raise SelectorError("an ICMP code needs an ICMP type")
        return ANY_PORTS
    if not 0 <= icmp_type <= 255 or (icmp_code is not None and not 0 <= icmp_code <= 255):
        raise SelectorError(f"ICMP type {icmp_type} / code {icmp_code} is not 0..255")
    if icmp_code is None:
        return (icmp_type << 8, icmp_type << 8 | 0xFF)
    return (icmp_type << 8 | icmp_code,) * 2


def _intersect_ports(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    if a == ANY_PORTS:
        return b
    if b == ANY_PORTS:
        return a
    if a == OPAQUE_PORTS or b == OPAQUE_PORTS:
        return a if a == b else None
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


# -- both sides: a selector ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    """A local and a remote :class:`TrafficSelector` of the same IP version.

    Direction-agnostic: for an outbound packet ``src`` is matched against ``local``, for an
    inbound or forwarded one ``src`` is matched against ``remote`` (see :meth:`matches`).
    If both sides name a protocol, it must be the same one.
    """

    local: TrafficSelector
    remote: TrafficSelector

    def __post_init__(self) -> None:
        if self.local.version != self.remote.version:
            raise SelectorError(f"local side is IPv{self.local.version}, "
                                f"remote side IPv{self.remote.version}")
        if self.local.proto and self.remote.proto and self.local.proto != self.remote.proto:
            raise SelectorError(f"local protocol {self.local.proto} differs from remote "
                                f"protocol {self.remote.proto}")

    @property
    def version(self) -> int:
        return self.local.version

    @property
    def proto(self) -> int:
        """The protocol this selector requires, 0 for any."""
        return self.local.proto or self.remote.proto

    @classmethod
    def any(cls, version: int = 4) -> Selector:
        return cls(TrafficSelector.any(version), TrafficSelector.any(version))

    @classmethod
    def parse(
        cls,
        src: str,
        dst: str,
        proto: str | int | None = None,
        sport: str | int | tuple[int, int] | None = None,
        dport: str | int | tuple[int, int] | None = None,
        icmp_type: int | None = None,
        icmp_code: int | None = None,
    ) -> Selector:
        """Build from ``ip xfrm policy``-like arguments, read in the outbound direction.

        ``src`` is the local side, ``dst`` the remote side, each in :meth:`TrafficSelector.parse`
        syntax (``%any`` takes the family of the other side). ``sport`` is the local port,
        ``dport`` the remote port. ``icmp_type``/``icmp_code`` go on both sides; without
        ``proto`` they imply icmp or icmpv6 by family.
        """
        local, remote = TrafficSelector.parse(src), TrafficSelector.parse(dst)
        if local.version != remote.version:
            if src.strip().lower() == "%any":
                local = TrafficSelector(6, 0, _MAX_ADDR[6], local.proto, local.port_start,
                                        local.port_end)
            elif dst.strip().lower() == "%any":
                remote = TrafficSelector(6, 0, _MAX_ADDR[6], remote.proto, remote.port_start,
                                         remote.port_end)
        version = local.version
        if proto is None and (icmp_type is not None or icmp_code is not None):
            proto = 1 if version == 4 else 58
        if proto is None:
            if sport is not None or dport is not None:
                raise SelectorError("ports need a protocol (tcp, udp, ...)")
            return cls(local, remote)
        number = parse_protocol(proto)
        if icmp_type is not None or icmp_code is not None:
            if number not in _ICMP_PROTOCOLS:
                raise SelectorError("ICMP type/code need protocol icmp or icmpv6")
            if sport is not None or dport is not None:
                raise SelectorError("ICMP has no ports; use icmp_type/icmp_code")
            ports = _icmp_ports(icmp_type, icmp_code)
            lports = rports = ports
        else:
            lports = _parse_ports(number, sport) if sport is not None else (
                local.port_start, local.port_end)
            rports = _parse_ports(number, dport) if dport is not None else (
                remote.port_start, remote.port_end)
        return cls(TrafficSelector(version, local.start, local.end, number, *lports),
                   TrafficSelector(version, remote.start, remote.end, number, *rports))

    def matches(self, fields: PacketFields, direction: str = Direction.OUT) -> bool:
        """Does the packet fit? ``direction``: ``out``, ``in`` or ``fwd`` (RFC 4301 §5.1, §5.2)."""
        local, remote = self.local, self.remote
        if fields.version != local.version:
            return False
        if direction == "out":
            laddr, raddr, lport, rport = fields.src, fields.dst, fields.sport, fields.dport
        elif direction == "in" or direction == "fwd":
            laddr, raddr, lport, rport = fields.dst, fields.src, fields.dport, fields.sport
        else:
            raise ValueError(f"direction must be out, in or fwd, not {direction!r}")
        if not (local.start <= laddr <= local.end and remote.start <= raddr <= remote.end):
            return False
        proto = local.proto or remote.proto
        if proto == 0:
            return True
        if proto != fields.proto:
            return False
        icmp_type = fields.icmp_type
        if icmp_type is not None:
            lport = rport = icmp_type << 8 | (fields.icmp_code or 0)
        return local.port_matches(lport) and remote.port_matches(rport)

    def reversed(self) -> Selector:
        """The same selector seen from the peer: local and remote swapped."""
        return Selector(self.remote, self.local)

    def covers(self, other: Selector) -> bool:
        """True if every packet ``other`` selects is selected by this one too."""
        return intersect(self, other) == other

    def to_ike(self) -> tuple[IkeTs, IkeTs]:
        """(local, remote) as plain IKEv2 traffic selector fields."""
        return self.local.to_ike(), self.remote.to_ike()

    @classmethod
    def from_ts_lists(
        cls, local: Iterable[TrafficSelector], remote: Iterable[TrafficSelector]
    ) -> list[Selector]:
        """Every (local, remote) pair of the same family and compatible protocol.

        IKEv2 carries TSi and TSr as two lists (RFC 7296 §2.9); an SPD needs pairs.
        """
        remote = list(remote)
        pairs = []
        for lts in local:
            for rts in remote:
                if lts.version != rts.version:
                    continue
                if lts.proto and rts.proto and lts.proto != rts.proto:
                    continue
                pairs.append(cls(lts, rts))
        return pairs

    def __str__(self) -> str:
        """``10.1.0.0/24[tcp/80] === 10.2.0.0/24``: the protocol is written where it has ports,
        or on the local side if neither side has ports."""
        local, remote = self.local, self.remote
        same = local.proto == remote.proto
        if not same or local.proto == 0:
            return f"{local} === {remote}"
        lshow = not local.any_port or remote.any_port
        rshow = not remote.any_port
        left = str(local) if lshow else local.address_text()
        right = str(remote) if rshow else remote.address_text()
        return f"{left} === {right}"


def intersect(a: Selector, b: Selector) -> Selector | None:
    """The narrowest selector that selects what both ``a`` and ``b`` select, or None.

    This is traffic selector narrowing (RFC 7296 §2.9) applied side by side.
    """
    local = a.local.intersect(b.local)
    if local is None:
        return None
    remote = a.remote.intersect(b.remote)
    if remote is None:
        return None
    if local.proto and remote.proto and local.proto != remote.proto:
        return None
    return Selector(local, remote)


def narrow(
    proposed: Iterable[TrafficSelector], allowed: Iterable[TrafficSelector]
) -> list[TrafficSelector]:
    """Narrow a peer's TS list to what ``allowed`` permits (RFC 7296 §2.9), keeping order.

    Each proposed selector is intersected with each allowed one; empty results and
    duplicates are dropped. An empty result means TS_UNACCEPTABLE.
    """
    allowed = list(allowed)
    result: list[TrafficSelector] = []
    for ts in proposed:
        for ok in allowed:
            both = ts.intersect(ok)
            if both is not None and both not in result:
                result.append(both)
    return result
