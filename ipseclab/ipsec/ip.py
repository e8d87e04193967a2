"""Just enough IPv4/IPv6 header handling for ESP and AH, without Scapy.

The IPsec core only needs to find where the upper-layer payload starts, to insert an
ESP or AH header there (transport mode, RFC 4303 §3.1.1, RFC 4302 §3.1.1), to build an
outer header (tunnel mode, RFC 4301 §5.1.2) and to fix lengths and checksums.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_IPV4 = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60

IPV6_EXTENSIONS = frozenset({PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT, PROTO_DSTOPTS})

IPAddress = IPv4Address | IPv6Address

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")


class MalformedIP(ValueError):
    """Bytes that are not a usable IP packet."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def as_address(value: str | bytes | IPAddress) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    return ip_address(value)


class IPHeader:
    """The parts of an IP header ESP and AH care about.

    ``header`` is every byte in front of the upper-layer payload that stays in front of an
    ESP/AH header in transport mode: the IPv4 header with options, or the IPv6 header with
    the Hop-by-Hop, Routing and Fragment headers (RFC 4303 §3.1.1); from
    :func:`parse_inbound_header`, every IPv6 extension header in front of ESP, AH or the
    upper-layer protocol, Destination Options too. ``next_header`` is the
    protocol that follows them and ``nh_offset`` where that value sits inside ``header``,
    so it can be replaced by 50 or 51. The addresses are kept as bytes and turned into
    ``ipaddress`` objects only when asked for: the data path does not need them.
    """

    __slots__ = ("dst_bytes", "header", "next_header", "nh_offset", "src_bytes",
                 "total_length", "version")

    def __init__(self, version: int, src_bytes: bytes, dst_bytes: bytes, header: bytes,
                 next_header: int, nh_offset: int, total_length: int) -> None:
        self.version = version
        self.src_bytes = src_bytes
        self.dst_bytes = dst_bytes
        self.header = header
        self.next_header = next_header
        self.nh_offset = nh_offset
        self.total_length = total_length

    @property
    def src(self) -> IPAddress:
        return (IPv4Address if self.version == 4 else IPv6Address)(self.src_bytes)

    @property
    def dst(self) -> IPAddress:
        return (IPv4Address if self.version == 4 else IPv6Address)(self.dst_bytes)

    @property
    def header_length(self) -> int:
        return len(self.header)


def packet_length(packet: bytes) -> int:
    """The length an IP packet's own header gives (IPv4 Total Length, IPv6 40 + Payload Length)."""
    if packet[0] >> 4 == 4:
        return (packet[2] << 8) | packet[3]
    return 40 + ((packet[4] << 8) | packet[5])


# The IPv6 extension headers that stay in front of ESP/AH when a packet is built (RFC 4303
# §3.1.1): Destination Options may go either side, and we leave them inside (protected) as
# Linux does. On receipt every extension header may come first (RFC 8200 §4.1).
_OUTBOUND_WALK = frozenset({PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT})


def parse_header(packet: bytes) -> IPHeader:
    """Split an IP packet into the header kept in transport mode and the rest.

    For building packets: an IPv6 walk stops at the first header that is not Hop-by-Hop,
    Routing or Fragment, so ESP/AH go in front of any Destination Options (RFC 4303 §3.1.1).
    """
    return _parse(packet, _OUTBOUND_WALK)


def parse_inbound_header(packet: bytes) -> IPHeader:
    """Split a received IP packet at the first header that is not an IPv6 extension header.

    A sender may put a Destination Options header before ESP (RFC 4303 §3.1.1) or AH
    (RFC 4302 §3.1.1), so on receipt every extension header is walked until ESP, AH or an
    upper-layer protocol comes. IPv4 is the same as :func:`parse_header`.
    """
    return _parse(packet, IPV6_EXTENSIONS)


def _parse(packet: bytes, walk: frozenset[int]) -> IPHeader:
    if not packet:
        raise MalformedIP("empty packet")
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            raise MalformedIP("IPv4 header truncated")
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        if ihl < 20 or total < ihl or len(packet) < total:
            raise MalformedIP("IPv4 header length or total length is inconsistent")
        return IPHeader(4, packet[12:16], packet[16:20], bytes(packet[:ihl]), packet[9], 9, total)
    if version == 6:
        if len(packet) < 40:
            raise MalformedIP("IPv6 header truncated")
        total = 40 + struct.unpack_from("!H", packet, 4)[0]
        if len(packet) < total:
            raise MalformedIP("IPv6 payload length beyond the packet")
        nh, nh_offset, offset = packet[6], 6, 40
        while nh in walk:
            if offset + 8 > total:
                raise MalformedIP("IPv6 extension header truncated")
            length = 8 if nh == PROTO_FRAGMENT else (packet[offset + 1] + 1) * 8
            nh, nh_offset, offset = packet[offset], offset, offset + length
        if offset > total:
            raise MalformedIP("IPv6 extension header truncated")
        return IPHeader(6, packet[8:24], packet[24:40], bytes(packet[:offset]), nh, nh_offset,
                        total)
    raise MalformedIP(f"IP version {version}")


def with_payload(hdr: IPHeader, next_header: int, payload: bytes) -> bytes:
    """Rebuild a packet from a kept header, a new next-header value and a new payload."""
    h = bytearray(hdr.header)
    h[hdr.nh_offset] = next_header
    if hdr.version == 4:
        struct.pack_into("!H", h, 2, len(h) + len(payload))
        h[10:12] = b"\x00\x00"
        struct.pack_into("!H", h, 10, checksum(bytes(h)))
    else:
        struct.pack_into("!H", h, 4, len(h) - 40 + len(payload))
    return bytes(h) + payload


def ipv4_header(src: IPv4Address, dst: IPv4Address, proto: int, payload_length: int, *,
                tos: int = 0, ttl: int = 64, ident: int = 0, df: bool = False) -> bytes:
    """A 20-octet IPv4 header with a correct checksum (RFC 791)."""
    hdr = _IPV4.pack(0x45, tos, 20 + payload_length, ident & 0xFFFF, 0x4000 if df else 0,
                     ttl, proto, 0, src.packed, dst.packed)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


class OuterHeader:
    """The outer header of one tunnel, built once and finished per packet (RFC 4301 §5.1.2).

    Only the length, the identification, the DS/ECN byte and DF change from packet to packet,
    so the checksum of everything else is summed once here. For IPv4, ``ipv4`` holds what
    ESP's fused fast path needs: that partial sum, TTL and protocol as one 16-bit word, and
    the two addresses (None for IPv6).
    """

    __slots__ = ("_addresses", "_head", "ipv4", "version")

    def __init__(self, src: IPAddress, dst: IPAddress, proto: int, ttl: int = 64) -> None:
        if src.version != dst.version:
            raise ValueError(f"address families differ: {src} and {dst}")
        self.version = src.version
        self._addresses = src.packed + dst.packed
        self.ipv4: tuple[int, int, bytes] | None = None
        if src.version == 4:
            ttl_proto = (ttl << 8) | proto
            self.ipv4 = (0x4500 + ttl_proto + sum(struct.unpack("!4H", self._addresses)),
                         ttl_proto, self._addresses)
        else:
            self._head = struct.pack("!BB", proto, ttl)

    def build(self, payload_length: int, tos: int = 0, ident: int = 0, df: bool | int = False
              ) -> bytes:
        """The header for one packet; ``df`` may also be the flags byte's 0x40 bit itself."""
        if self.ipv4 is not None:
            base, ttl_proto, addresses = self.ipv4
            total = 20 + payload_length
            flags = 0x4000 if df else 0
            return _IPV4_WORDS.pack(0x4500 | tos, total, ident, flags, ttl_proto,
                                    ipv4_checksum(base + tos + total + ident + flags)
                                    ) + addresses
        first = (6 << 28) | ((tos & 0xFF) << 20)
        return _IPV6_FIRST.pack(first, payload_length) + self._head + self._addresses


def ipv4_checksum(word_sum: int) -> int:
    """The header checksum for a positive sum of 16-bit words (RFC 791, RFC 1071).

    The one's complement of the one's complement sum is ``-word_sum mod 0xFFFF``: folding
    the carries back in is arithmetic modulo 2**16 - 1, and a sum that folds to 0xFFFF
    gives 0, as :func:`checksum` does. (An IPv4 header's sum is never 0: it holds 0x4500.)
    """
    return -word_sum % 0xFFFF


# The first 12 octets of an IPv4 header without options as six words: version/IHL/TOS,
# total length, identification, flags/fragment offset, TTL/protocol, checksum.
_IPV4_WORDS = struct.Struct("!6H")
_IPV6_FIRST = struct.Struct("!IH")


def ipv6_header(src: IPv6Address, dst: IPv6Address, next_header: int, payload_length: int, *,
                traffic_class: int = 0, flow_label: int = 0, hop_limit: int = 64) -> bytes:
    """A 40-octet IPv6 header (RFC 8200 §3)."""
    first = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return _IPV6.pack(first, payload_length, next_header, hop_limit, src.packed, dst.packed)


def ip_header(src: IPAddress, dst: IPAddress, proto: int, payload_length: int, *,
              tos: int = 0, ttl: int = 64, ident: int = 0, df: bool = False) -> bytes:
    """An outer header of the right family for ``src`` and ``dst``."""
    if src.version != dst.version:
        raise ValueError(f"address families differ: {src} and {dst}")
    if src.version == 4:
        return ipv4_header(src, dst, proto, payload_length, tos=tos, ttl=ttl, ident=ident, df=df)
    return ipv6_header(src, dst, proto, payload_length, traffic_class=tos, hop_limit=ttl)


def traffic_class(packet: bytes) -> int:
    """The DS field and ECN bits (IPv4 TOS, IPv6 Traffic Class) of a packet."""
    if packet[0] >> 4 == 4:
        return packet[1]
    return ((packet[0] & 0x0F) << 4) | (packet[1] >> 4)


def pseudo_header(src: IPAddress, dst: IPAddress, proto: int, length: int) -> bytes:
    """The pseudo-header of TCP/UDP checksums (RFC 793 §3.1, RFC 8200 §8.1)."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def fix_transport_checksum(packet: bytes) -> bytes:
    """Recompute the TCP or UDP checksum of a whole IP packet.

    Transport mode behind a NAT needs this (RFC 3948 §3.1.2): the NAT rewrote the outer
    addresses, which are also this packet's addresses, so the checksum the sender computed
    over its own addresses no longer fits. Every extension header is walked to find TCP/UDP.
    """
    hdr = parse_inbound_header(packet)
    if hdr.next_header not in (PROTO_TCP, PROTO_UDP):
        return packet
    seg = bytearray(packet[hdr.header_length : hdr.total_length])
    off = 16 if hdr.next_header == PROTO_TCP else 6
    if len(seg) < off + 2:
        return packet
    seg[off : off + 2] = b"\x00\x00"
    value = checksum(pseudo_header(hdr.src, hdr.dst, hdr.next_header, len(seg)) + bytes(seg))
    if hdr.next_header == PROTO_UDP and value == 0:
        value = 0xFFFF
    struct.pack_into("!H", seg, off, value)
    return hdr.header + bytes(seg)


def icmp_too_big(src: IPAddress, original: bytes, mtu: int) -> bytes:
    """The ICMP error that tells the sender of ``original`` to send at most ``mtu`` octets.

    IPv4: type 3 code 4 "fragmentation needed and DF set" with the next-hop MTU (RFC 1191
    §4), quoting as much of the packet as fits in 576 octets (RFC 1812 §4.3.2.3). IPv6: type
    2 "Packet Too Big" (RFC 4443 §3.2), quoting as much as fits in 1280 octets. ``src`` is the
    address this node sends it from; the destination is the original packet's source.
    """
    if original[0] >> 4 == 4:
        dst = IPv4Address(original[12:16])
        body = bytearray(struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + original[: 576 - 28])
        struct.pack_into("!H", body, 2, checksum(bytes(body)))
        return ipv4_header(src, dst, PROTO_ICMP, len(body), tos=0xC0) + bytes(body)
    dst = IPv6Address(original[8:24])
    body = bytearray(struct.pack("!BBHI", 2, 0, 0, mtu) + original[: 1280 - 48])
    struct.pack_into("!H", body, 2,
                     checksum(pseudo_header(src, dst, PROTO_ICMPV6, len(body)) + bytes(body)))
    return ipv6_header(src, dst, PROTO_ICMPV6, len(body), hop_limit=64) + bytes(body)


def fragment_ipv4(packet: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 packet into fragments of at most ``mtu`` octets (RFC 791, "Fragmentation").

    A tunnel gateway fragments the outer packet after encapsulation when it does not fit the
    link (RFC 4301 §8.1): the peer reassembles before it processes ESP or AH. DF is cleared
    on the fragments; options are copied into later fragments only when their copied flag is
    set. A packet that fits comes back alone and unchanged.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise MalformedIP("not an IPv4 packet")
    ihl = (packet[0] & 0x0F) * 4
    total = (packet[2] << 8) | packet[3]
    if ihl < 20 or not ihl <= total <= len(packet):
        raise MalformedIP("IPv4 header or total length does not fit the packet")
    if total <= mtu:
        return [packet[:total]]
    flags = (packet[6] << 8) | packet[7]
    base_offset, more = flags & 0x1FFF, flags & 0x2000
    later_header = packet[:20] + _copied_options(packet[20:ihl])
    fragments = []
    start = ihl
    header = packet[:ihl]
    while start < total:
        room = (mtu - len(header)) & ~7
        if room <= 0:
            raise MalformedIP(f"MTU {mtu} leaves no room for a fragment's data")
        end = min(start + room, total)
        h = bytearray(header)
        h[0] = 0x40 | len(h) >> 2
        struct.pack_into("!H", h, 2, len(h) + end - start)
        struct.pack_into("!H", h, 6,
                         base_offset + (start - ihl) // 8 | (0x2000 if end < total else more))
        h[10:12] = b"\x00\x00"
        struct.pack_into("!H", h, 10, checksum(bytes(h)))
        fragments.append(bytes(h) + packet[start:end])
        start, header = end, later_header
    return fragments


IPV6_MIN_MTU = 1280  # RFC 8200 §5: every IPv6 link carries at least this much


def fragment_ipv6(packet: bytes, mtu: int, identification: int) -> list[bytes]:
    """Split an IPv6 packet into fragments of at most ``mtu`` octets (RFC 8200 §4.5).

    In IPv6 only the source fragments, with a Fragment header (next header 44) after the
    unfragmentable part: the fixed header and any Hop-by-Hop or Routing header (and the
    Destination Options header before a Routing header). ``identification`` must differ for
    every packet the gateway fragments to this destination within a reassembly lifetime. A
    packet that fits comes back alone and unchanged.
    """
    if len(packet) < 40 or packet[0] >> 4 != 6:
        raise MalformedIP("not an IPv6 packet")
    total = 40 + ((packet[4] << 8) | packet[5])
    if total > len(packet):
        raise MalformedIP("IPv6 payload length does not fit the packet")
    if total <= mtu:
        return [packet[:total]]
    if mtu < IPV6_MIN_MTU:
        raise MalformedIP(f"MTU {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}")
    # The unfragmentable part: walk Hop-by-Hop, Routing and the Destination Options header
    # that precedes a Routing header (RFC 8200 §4.5).
    next_at, next_header, end = 6, packet[6], 40
    chain = []
    while next_header in (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS):
        if end + 8 > total:
            raise MalformedIP("extension header runs past the packet")
        chain.append((next_at, next_header, end, end + (packet[end + 1] + 1) * 8))
        next_at, next_header, end = end, packet[end], chain[-1][3]
    while chain and chain[-1][1] == PROTO_DSTOPTS:  # options for the final destination
        next_at, next_header, end, _ = chain.pop()
    if next_header == PROTO_FRAGMENT:
        raise MalformedIP("the packet is a fragment already")
    unfragmentable = bytearray(packet[:end])
    unfragmentable[next_at] = PROTO_FRAGMENT
    room = (mtu - end - 8) & ~7
    fragments = []
    start = end
    while start < total:
        stop = min(start + room, total)
        more = 1 if stop < total else 0
        head = bytearray(unfragmentable)
        struct.pack_into("!H", head, 4, len(head) - 40 + 8 + stop - start)
        fragment_header = struct.pack("!BBHI", next_header, 0,
                                      (start - end) | more, identification & 0xFFFFFFFF)
        fragments.append(bytes(head) + fragment_header + packet[start:stop])
        start = stop
    return fragments


def _copied_options(options: bytes) -> bytes:
    """The IPv4 options with the copied flag (RFC 791), padded to a multiple of 4 octets."""
    kept, i = bytearray(), 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no operation
            i += 1
            continue
        length = options[i + 1] if i + 1 < len(options) else 0
        if length < 2:
            break
        if kind & 0x80:
            kept += options[i : i + length]
        i += length
    return bytes(kept) + b"\x00" * (-len(kept) % 4)


def ecn_decapsulate(outer_traffic_class: int, inner: bytes) -> bytes | None:
    """The inner packet with the ECN field a tunnel's outer header asks for, or None to drop.

    RFC 6040 §4.2: an encapsulator that copies ECN to the outer header (normal mode, as this
    gateway and Linux do) relies on the decapsulator to carry congestion marks a router made
    on the outer header into the inner one: outer CE turns an ECN-capable inner packet into
    CE and drops a Not-ECT one (its sender could not hear of the congestion otherwise);
    outer ECT(1) over inner ECT(0) gives ECT(1). Every other combination keeps the inner
    field. The common case, an outer Not-ECT, returns ``inner`` itself.
    """
    outer = outer_traffic_class & 3
    if not outer:
        return inner
    v4 = inner[0] >> 4 == 4
    current = inner[1] & 3 if v4 else (inner[1] >> 4) & 3
    if outer == 3:
        if current == 0:
            return None
        wanted = 3
    elif outer == 1 and current == 2:
        wanted = 1
    else:
        return inner
    if wanted == current:
        return inner
    packet = bytearray(inner)
    if v4:
        packet[1] = (packet[1] & 0xFC) | wanted
        ihl = (packet[0] & 0x0F) * 4
        packet[10:12] = b"\x00\x00"
        struct.pack_into("!H", packet, 10, checksum(bytes(packet[:ihl])))
    else:
        packet[1] = (packet[1] & 0xCF) | wanted << 4
    return bytes(packet)
