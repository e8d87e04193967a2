"""AH, the Authentication Header (RFC 4302).

AH authenticates the whole packet, including the IP header, but encrypts nothing. Fields
that routers change on the way (IPv4 TOS, flags and fragment offset, TTL, checksum,
mutable options; IPv6 traffic class, flow label, hop limit, options marked as changing
en route) count as zero for the ICV (RFC 4302 §3.3.3.1, Appendix A). That is also why AH
cannot cross a NAT: the addresses it protects are the ones a NAT rewrites.

On the wire (§2)::

    Next Header (1) | Payload Len (1) | Reserved (2) | SPI (4) | Sequence Number (4) | ICV
"""

from __future__ import annotations

import hmac
import struct

from ipseclab.ipsec import ip
from ipseclab.ipsec.esp import inner_packet
from ipseclab.ipsec.replay import ReplayVerdict
from ipseclab.ipsec.sa import Mode, SecurityAssociation
from ipseclab.ipsec.verdict import ProtectError, SequenceOverflow, Status, Unprotected

_AH = struct.Struct("!BBHII")
_HI = struct.Struct("!I")

# RFC 4302 Appendix A.1: IPv4 options that do not change in transit.
_IMMUTABLE_V4_OPTIONS = frozenset({0, 1, 130, 133, 134, 148, 149})


def icv_field_size(sa: SecurityAssociation) -> int:
    """The ICV field: the ICV padded to 32 bits (IPv4) or 64 bits (IPv6), RFC 4302 §2.6."""
    align = 4 if sa.family == 4 else 8
    return sa.icv_size + (-(12 + sa.icv_size) % align)


def mutable_ranges(header: bytes) -> list[tuple[int, int, str]]:
    """Where an IP header (with extension headers) has fields AH counts as zero, with names.

    RFC 4302 §3.3.3.1 and Appendix A: IPv4 TOS, flags and fragment offset, TTL, checksum and
    mutable options; IPv6 traffic class and flow label, hop limit, and the data of options
    marked as changing en route (RFC 8200 §4.2). Byte 0 of IPv6 is listed whole, but its
    version nibble is kept (:func:`zero_mutable`).
    """
    out: list[tuple[int, int, str]] = []
    if header[0] >> 4 == 4:
        out += [(1, 2, "TOS"), (6, 8, "Flags, Fragment Offset"), (8, 9, "TTL"),
                (10, 12, "Header Checksum")]
        i = 20
        while i < len(header):
            kind = header[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            length = header[i + 1] if i + 1 < len(header) else 0
            if length < 2:
                break
            if kind not in _IMMUTABLE_V4_OPTIONS:
                out.append((i, min(i + length, len(header)), f"option {kind} (mutable)"))
            i += length
        return out
    out += [(0, 4, "Version (kept), Traffic Class, Flow Label"), (7, 8, "Hop Limit")]
    nh, offset = header[6], 40
    while offset < len(header):
        length = 8 if nh == ip.PROTO_FRAGMENT else (header[offset + 1] + 1) * 8
        if nh in (ip.PROTO_HOPOPTS, ip.PROTO_DSTOPTS):
            i, end = offset + 2, min(offset + length, len(header))
            while i < end:
                kind = header[i]
                if kind == 0:
                    i += 1
                    continue
                size = header[i + 1] if i + 1 < end else 0
                if kind & 0x20 and size:
                    out.append((i + 2, i + 2 + size, f"option 0x{kind:02x} data (mutable)"))
                i += 2 + size
        elif nh == ip.PROTO_ROUTING and offset + 8 <= len(header) \
                and header[offset + 2] == _SEGMENT_ROUTING:
            out += _srh_mutable_tlvs(header, offset, min(offset + length, len(header)))
        nh, offset = header[offset], offset + length
    return out


def _srh_mutable_tlvs(header: bytes, offset: int, end: int) -> list[tuple[int, int, str]]:
    """TLVs of a Segment Routing Header whose data may change en route (RFC 8754 §2.1, §8.2:
    TLV types 128-255)."""
    out: list[tuple[int, int, str]] = []
    i = offset + 8 + 16 * (header[offset + 4] + 1)  # after Segment List[0..Last Entry]
    while i < end:
        kind = header[i]
        if kind == 0:  # Pad1
            i += 1
            continue
        size = header[i + 1] if i + 1 < end else 0
        if kind & 0x80 and size:
            out.append((i + 2, min(i + 2 + size, end), f"SRH TLV {kind} data (mutable)"))
        i += 2 + size
    return out


_ADDRESS_LIST_ROUTING = frozenset({0, 2})  # RFC 8200 §4.4 (Type 0, deprecated), RFC 6275 §6.4
_SEGMENT_ROUTING = 4  # RFC 8754


def arrival_view(header: bytes) -> bytes:
    """An IPv6 header with its Routing header and destination as they are at arrival.

    A Routing header changes the destination address and itself on the way; for the ICV
    the sender uses the values the packet will have at the last hop and the receiver the
    values it sees, which are those once Segments Left is 0 (RFC 4302 §3.3.3.1.2, Appendix
    A.2). Done for:

    * Type 2 (Mobile IPv6, RFC 6275 §6.4) and the deprecated Type 0: each hop swaps the
      destination with the next listed address, so at arrival the destination is the last
      address, the list holds the hops visited (the original destination first) and
      Segments Left is 0.
    * Type 4 (Segment Routing, RFC 8754 §4.3.1): each segment endpoint decrements Segments
      Left and copies Segment List[Segments Left] to the destination; the list itself does
      not change. At arrival the destination is Segment List[0] and Segments Left is 0.
      TLVs of types 128-255 may change en route and count as zero (:func:`mutable_ranges`).

    A header with Segments Left already 0 (the receiver, or a kernel that processed the
    Routing header before AH) is left as it is, and so is any other Routing Type: its
    destination and Segments Left are covered as sent. IPv4 headers come back unchanged.
    """
    if header[0] >> 4 != 6:
        return header
    nh, offset = header[6], 40
    while offset + 8 <= len(header):
        length = 8 if nh == ip.PROTO_FRAGMENT else (header[offset + 1] + 1) * 8
        if nh == ip.PROTO_ROUTING:
            left = header[offset + 3]
            kind = header[offset + 2]
            end = min(offset + length, len(header))
            if left and kind in _ADDRESS_LIST_ROUTING:
                return _arrival_address_list(header, offset, end, left)
            if left and kind == _SEGMENT_ROUTING:
                first = offset + 8
                if first + 16 > end:
                    return header
                h = bytearray(header)
                h[offset + 3] = 0
                h[24:40] = header[first : first + 16]
                return bytes(h)
            return header
        nh, offset = header[offset], offset + length
    return header


def _arrival_address_list(header: bytes, offset: int, end: int, left: int) -> bytes:
    count = (end - offset - 8) // 16
    if left > count:
        return header  # the receiver drops such a packet (RFC 8200 §4.4); nothing to predict
    base = offset + 8
    addresses = [header[base + 16 * i : base + 16 * (i + 1)] for i in range(count)]
    visited = count - left
    arrived = [*addresses[:visited], header[24:40], *addresses[visited:-1]]
    h = bytearray(header)
    h[24:40] = addresses[-1]
    h[offset + 3] = 0
    h[base : base + 16 * count] = b"".join(arrived)
    return bytes(h)


def zero_mutable(header: bytes) -> bytes:
    """The IP header (with extension headers) as the ICV sees it (RFC 4302 §3.3.3.1).

    Mutable fields count as zero (:func:`mutable_ranges`), and an IPv6 destination and
    Routing header count as they will be at arrival (:func:`arrival_view`).
    """
    h = bytearray(arrival_view(header))
    for start, end, _ in mutable_ranges(header):
        h[start:end] = bytes(end - start)
    if header[0] >> 4 == 6:
        h[0] = header[0] & 0xF0  # the version stays
    return bytes(h)


def _icv(sa: SecurityAssociation, header: bytes, ah_zeroed: bytes, payload: bytes,
         seq: int) -> bytes:
    data = zero_mutable(header) + ah_zeroed + payload
    if sa.esn:  # RFC 4302 §2.5.1: the high bits are covered, not sent
        data += _HI.pack(seq >> 32)
    return sa.mac.compute(data)


def _build(sa: SecurityAssociation, header: ip.IPHeader, next_header: int,
           payload: bytes) -> bytes:
    seq = sa.seq + 1
    if seq >= (1 << 64 if sa.esn else 1 << 32):
        raise SequenceOverflow(f"{sa.name}: sequence number space exhausted; rekey the SA")
    sa.seq = seq
    field = icv_field_size(sa)
    ah_zeroed = _AH.pack(next_header, (12 + field) // 4 - 2, 0, sa.spi,
                         seq & 0xFFFFFFFF) + bytes(field)
    template = ip.with_payload(header, ip.PROTO_AH, ah_zeroed + payload)
    hdr_len = header.header_length
    icv = _icv(sa, template[:hdr_len], ah_zeroed, payload, seq)
    return template[: hdr_len + 12] + icv + bytes(field - len(icv)) + payload


def encapsulate(sa: SecurityAssociation, packet: bytes) -> bytes:
    """Protect a whole IP packet with AH and return the packet that goes on the wire."""
    if sa.mode is Mode.TUNNEL:
        nh = ip.PROTO_IPV4 if packet[0] >> 4 == 4 else ip.PROTO_IPV6
        outer = ip.parse_header(ip.ip_header(sa.src, sa.dst, nh, 0, ident=sa.next_ident()))
        return _build(sa, outer, nh, packet)
    hdr = ip.parse_header(packet)
    if hdr.version == 4 and (packet[6] & 0x3F or packet[7]):
        raise ProtectError("transport mode cannot protect an IPv4 fragment (RFC 4301 §7)")
    return _build(sa, hdr, hdr.next_header, packet[hdr.header_length : hdr.total_length])


def parse_ah(packet: bytes) -> tuple[ip.IPHeader, int, int, int, int]:
    """(outer header, next header, SPI, sequence number, AH length) of an AH packet.

    Every IPv6 extension header in front of AH is walked: a Destination Options header may
    precede AH (RFC 4302 §3.1.1) and is then covered by the ICV, mutable options as zero.
    """
    hdr = ip.parse_inbound_header(packet)
    if hdr.next_header != ip.PROTO_AH:
        raise ip.MalformedIP(f"next header is {hdr.next_header}, not AH")
    start = hdr.header_length
    if hdr.total_length < start + 12:
        raise ip.MalformedIP("AH header truncated")
    nh, plen, _, spi, seq = _AH.unpack_from(packet, start)
    length = (plen + 2) * 4
    if length < 12 or start + length > hdr.total_length:
        raise ip.MalformedIP("AH payload length is inconsistent")
    return hdr, nh, spi, seq, length


def decapsulate(sa: SecurityAssociation, packet: bytes) -> Unprotected:
    """Check AH on a whole IP packet (RFC 4302 §3.4) and strip it. Never raises."""
    counters = sa.counters
    try:
        hdr, nh, spi, seq32, length = parse_ah(packet)
    except ip.MalformedIP as exc:
        counters.malformed += 1
        return Unprotected(Status.MALFORMED, detail=str(exc))
    if length != 12 + icv_field_size(sa):
        counters.malformed += 1
        return Unprotected(Status.MALFORMED, spi, detail="AH length does not fit the SA's ICV")
    check = sa.replay.check(seq32)
    if check.verdict is not ReplayVerdict.OK:
        too_old = check.verdict is ReplayVerdict.TOO_OLD
        if too_old:
            counters.too_old += 1
        else:
            counters.replay += 1
        return Unprotected(Status.TOO_OLD if too_old else Status.REPLAY, spi, check.seq64, sa=sa)
    seq = check.seq64
    start = hdr.header_length
    ah = packet[start : start + length]
    payload = packet[start + length : hdr.total_length]
    ah_zeroed = ah[:12] + bytes(length - 12)
    icv = _icv(sa, hdr.header, ah_zeroed, payload, seq)
    if not hmac.compare_digest(icv, ah[12 : 12 + sa.icv_size]):
        counters.auth_failed += 1
        return Unprotected(Status.AUTH_FAILED, spi, seq, sa=sa, detail="ICV mismatch")
    sa.replay.update(seq)
    result = Unprotected(Status.OK, spi, seq, nh, payload, sa=sa)
    if nh == ip.PROTO_NONE:
        counters.dummy += 1
        result.status = Status.DUMMY
        return result
    counters.packets += 1
    counters.bytes += len(payload)
    return inner_packet(sa, result, hdr)
