"""ESP, the Encapsulating Security Payload (RFC 4303).

On the wire (RFC 4303 §2)::

    SPI (4) | Sequence Number (4) | IV | encrypted: payload, TFC pad, padding,
    pad length (1), next header (1) | ICV

Two levels of API:

* :func:`protect` / :func:`unprotect` turn a payload into the ESP datagram (from the SPI
  to the ICV) and back. A gateway sends that datagram with a raw socket (IP protocol 50)
  or a UDP socket (RFC 3948) and lets the kernel build the outer IP header.
* :func:`encapsulate` / :func:`decapsulate` work on whole IP packets, applying transport
  or tunnel mode (RFC 4303 §3.1); captures and notebooks use these.

Each opens with the common case done quickly: in C where an SA has a ``compiled`` object
(ipseclab/ipsec/fastpath.py says which), else in fused Python. The rest of each function is
the general path, the one to read; the fast ones must give exactly what it gives.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag

from ipseclab.errors import AuthenticationFailed
from ipseclab.ipsec import ip
from ipseclab.ipsec.replay import ReplayVerdict
from ipseclab.ipsec.sa import Mode, SecurityAssociation
from ipseclab.ipsec.udpencap import udp_header
from ipseclab.ipsec.verdict import ProtectError, SequenceOverflow, Status, Unprotected

_HEADER = struct.Struct("!II")
_HI = struct.Struct("!I")
# RFC 4303 §2.4: the padding bytes are 1, 2, 3, ... unless the algorithm says otherwise.
_PADDING = [bytes(range(1, n + 1)) for n in range(256)]
# The whole trailer for pad lengths below 16 (every block size here): padding, pad length,
# next header, indexed by pad * 256 + next header.
_TRAILERS = [_PADDING[p] + bytes((p, nh)) for p in range(16) for nh in range(256)]
_TRAILERS_IPV4 = _TRAILERS[4:16 * 256:256]  # by pad length, next header 4 (IPv4)
_OK = ReplayVerdict.OK
_TUNNEL = Mode.TUNNEL
_STATUS_OK = Status.OK
# An IPv4 header without options followed by ESP: version/IHL, total length, protocol,
# then the ESP header's SPI and sequence number.
_V4_ESP = struct.Struct("!BxH5xB10xII")
# An IPv4 header without options (ip.OuterHeader's), the ESP header and an 8-octet IV
# holding the sequence number.
_IPV4_ESP_HEAD = struct.Struct("!6H8sIIQ")


def _esn_aad(header: bytes, seq: int, esn: bool) -> bytes:
    """RFC 4106 §5: AAD is SPI || seq, or SPI || seq high || seq low with ESN."""
    if esn:
        return header[:4] + _HI.pack(seq >> 32) + header[4:]
    return header


def protect(sa: SecurityAssociation, next_header: int, payload: bytes) -> bytes:
    """Build the ESP datagram for one payload, advancing the SA's sequence number."""
    seq = sa.seq + 1
    if seq >= (1 << 64 if sa.esn else 1 << 32):
        raise SequenceOverflow(f"{sa.name}: sequence number space exhausted; rekey the SA")
    sa.seq = seq
    compiled = sa.compiled
    if compiled is not None:  # the steps below for AEAD SAs, in C (ipsec/fastpath.py)
        return compiled.protect(seq, next_header, payload)
    fast = sa.fast_aead
    if fast is not None:
        # The same steps as below for the common case, with fewer calls and copies:
        # header, IV = sequence number, AAD = header (RFC 4106 §3.1, §5).
        header = sa.spi_bytes + seq.to_bytes(4, "big")
        iv = seq.to_bytes(8, "big")
        trailer = _TRAILERS[(-(len(payload) + 2) % 4) * 256 + next_header]
        return header + iv + fast[0](fast[2] + iv, payload + trailer, header)
    enc = sa.encryption
    if sa.tfc_padding and sa.mode is Mode.TUNNEL and len(payload) < sa.tfc_padding:
        # RFC 4303 §2.7: the receiver finds the end of the inner packet from its own header.
        payload += bytes(sa.tfc_padding - len(payload))
    pad = -(len(payload) + 2) % enc.block_size
    plaintext = payload + _PADDING[pad] + bytes((pad, next_header))
    header = _HEADER.pack(sa.spi, seq & 0xFFFFFFFF)
    iv = seq.to_bytes(8, "big") if enc.counter_iv else os.urandom(enc.iv_size)
    if enc.aead:
        return header + iv + sa.cipher.encrypt(iv, plaintext, _esn_aad(header, seq, sa.esn))
    body = header + iv + sa.cipher.encrypt(iv, plaintext, b"")
    if sa.mac is None:
        return body
    # RFC 4303 §2.2.1: with ESN the high 32 bits are covered by the ICV but not sent.
    return body + sa.mac.compute(body + _HI.pack(seq >> 32) if sa.esn else body)


def unprotect(sa: SecurityAssociation, datagram: bytes) -> Unprotected:
    """Check and decrypt one ESP datagram (RFC 4303 §3.4): replay, ICV, decrypt, padding.

    The ICV is checked before anything is decrypted, and the replay window moves only
    after the ICV verified (§3.4.3). Every outcome is a verdict; nothing raises.
    """
    compiled = sa.compiled
    if compiled is not None:  # the common case in C (ipsec/fastpath.py); None: not decided
        result = compiled.unprotect(sa, datagram)
        if type(result) is tuple:  # authentic, but the trailer needs a closer look
            return _trailer(sa, result[2], result[0], result[1])
        if result is not None:
            return result
    counters = sa.counters
    fast = sa.fast_aead
    if fast is not None and len(datagram) >= 36:
        seq = int.from_bytes(datagram[4:8], "big")
        check = sa.replay.check(seq)
        if check.verdict is _OK:
            try:
                plaintext = fast[1](fast[2] + datagram[8:16], datagram[16:], datagram[:8])
            except InvalidTag:
                counters.auth_failed += 1
                return Unprotected(Status.AUTH_FAILED, int.from_bytes(datagram[:4], "big"), seq,
                                   sa=sa, detail="ICV mismatch")
            sa.replay.update(seq)
            return _trailer(sa, plaintext, int.from_bytes(datagram[:4], "big"), seq)
    enc = sa.encryption
    iv_size = enc.iv_size
    if len(datagram) < 8 + iv_size + sa.icv_size + 2:
        counters.malformed += 1
        return Unprotected(Status.MALFORMED, detail="shorter than ESP header, IV and ICV")
    spi, seq32 = _HEADER.unpack_from(datagram)
    check = sa.replay.check(seq32)
    if check.verdict is not ReplayVerdict.OK:
        if check.verdict is ReplayVerdict.TOO_OLD:
            counters.too_old += 1
            return Unprotected(Status.TOO_OLD, spi, check.seq64, sa=sa)
        counters.replay += 1
        return Unprotected(Status.REPLAY, spi, check.seq64, sa=sa)
    seq = check.seq64
    iv = datagram[8 : 8 + iv_size]
    try:
        if enc.aead:
            plaintext = sa.cipher.decrypt(iv, datagram[8 + iv_size :],
                                          _esn_aad(datagram[:8], seq, sa.esn))
        else:
            if sa.mac is not None:
                body, icv = datagram[: -sa.icv_size], datagram[-sa.icv_size :]
                if not sa.mac.verify(body + _HI.pack(seq >> 32) if sa.esn else body, icv):
                    raise AuthenticationFailed("ICV mismatch")
            else:
                body = datagram
            ciphertext = body[8 + iv_size :]
            if len(ciphertext) % enc.block_size:
                counters.malformed += 1
                return Unprotected(Status.MALFORMED, spi, seq, sa=sa,
                                   detail=f"ciphertext not a multiple of {enc.block_size}")
            plaintext = sa.cipher.decrypt(iv, ciphertext, b"")
    except AuthenticationFailed as exc:
        counters.auth_failed += 1
        return Unprotected(Status.AUTH_FAILED, spi, seq, sa=sa, detail=str(exc))
    sa.replay.update(seq)
    return _trailer(sa, plaintext, spi, seq)


def _trailer(sa: SecurityAssociation, plaintext: bytes, spi: int, seq: int) -> Unprotected:
    """Check and strip the padding and trailer of a decrypted payload (RFC 4303 §2.4-2.6)."""
    counters = sa.counters
    if len(plaintext) < 2:
        counters.malformed += 1
        return Unprotected(Status.MALFORMED, spi, seq, sa=sa, detail="no ESP trailer")
    pad, next_header = plaintext[-2], plaintext[-1]
    end = len(plaintext) - 2 - pad
    if end < 0 or plaintext[end:-2] != _PADDING[pad]:
        counters.bad_padding += 1
        return Unprotected(Status.BAD_PADDING, spi, seq, next_header, sa=sa,
                           detail="padding is not 1, 2, 3, ... (RFC 4303 §2.4)")
    payload = plaintext[:end]
    if next_header == ip.PROTO_NONE:
        counters.dummy += 1
        return Unprotected(Status.DUMMY, spi, seq, next_header, payload, sa=sa)
    counters.packets += 1
    counters.bytes += len(payload)
    return Unprotected(Status.OK, spi, seq, next_header, payload, sa=sa)


def outbound(sa: SecurityAssociation, packet: bytes) -> bytes:
    """The ESP datagram for an IP packet, by the SA's mode (RFC 4303 §3.1)."""
    if sa.mode is Mode.TUNNEL:
        return protect(sa, ip.PROTO_IPV4 if packet[0] >> 4 == 4 else ip.PROTO_IPV6, packet)
    hdr = _transport_header(packet)
    return protect(sa, hdr.next_header, packet[hdr.header_length : hdr.total_length])


def _transport_header(packet: bytes) -> ip.IPHeader:
    hdr = ip.parse_header(packet)
    if hdr.version == 4 and (packet[6] & 0x3F or packet[7]):
        raise ProtectError("transport mode cannot protect an IPv4 fragment (RFC 4301 §7)")
    return hdr


def encapsulate(sa: SecurityAssociation, packet: bytes) -> bytes:
    """Protect a whole IP packet and return the IP packet that goes on the wire."""
    outer4 = sa.fast_outer4
    if outer4 is not None and sa.mode is _TUNNEL and packet[0] >> 4 == 4:
        # What protect() and outer_packet() do, fused for the gateway's common case: an
        # IPv4 packet into an AEAD tunnel SA without ESN over IPv4 (RFC 4303 §3.1.2,
        # RFC 4106 §3.1: IV = sequence number).
        length = len(packet)
        pad = (2 - length) & 3
        total = 38 + length + pad + sa.icv_size
        if total > 0xFFFF:
            _too_long(sa, total)
        seq = sa.seq + 1
        if seq > 0xFFFFFFFF:
            raise SequenceOverflow(f"{sa.name}: sequence number space exhausted; rekey the SA")
        sa.seq = seq
        base, ttl_proto, addresses = outer4
        tos = packet[1]
        df = (packet[6] & 0x40) << 8  # RFC 4301 §8.1: copy DF from the inner header
        ident = sa.ident = sa.ident % 0xFFFF + 1  # as next_ident(), without the call
        compiled = sa.compiled
        if compiled is not None and len(packet) >= 20:  # the lines below, in C
            return compiled.encapsulate4(seq, ident, bytes(packet))
        # Outer header (checksum inlined as ip.ipv4_checksum() computes it), ESP header
        # and IV in one struct; AAD and nonce are slices of it.
        head = _IPV4_ESP_HEAD.pack(0x4500 | tos, total, ident, df, ttl_proto,
                                   -(base + tos + total + ident + df) % 0xFFFF, addresses,
                                   sa.spi, seq, seq)
        fast = sa.fast_aead
        return head + fast[0](fast[2] + head[28:], packet + _TRAILERS_IPV4[pad], head[20:28])
    if sa.mode is Mode.TUNNEL:
        datagram = outbound(sa, packet)
        df = packet[0] >> 4 == 4 and bool(packet[6] & 0x40)
        return outer_packet(sa, datagram, tos=ip.traffic_class(packet), df=df)
    hdr = _transport_header(packet)
    datagram = protect(sa, hdr.next_header, packet[hdr.header_length : hdr.total_length])
    length = len(datagram) + (8 if sa.encap is not None else 0)
    if length + (hdr.header_length if hdr.version == 4 else hdr.header_length - 40) > 0xFFFF:
        _too_long(sa, length + hdr.header_length)
    if sa.encap is not None:
        return ip.with_payload(hdr, ip.PROTO_UDP,
                               udp_header(sa.encap.sport, sa.encap.dport, datagram, hdr.src,
                                          hdr.dst) + datagram)
    return ip.with_payload(hdr, ip.PROTO_ESP, datagram)


def _too_long(sa: SecurityAssociation, length: int) -> None:
    raise ProtectError(f"{sa.name}: the protected packet would be {length} octets, more than"
                       " the 65535 an IP packet can hold")


def outer_packet(sa: SecurityAssociation, datagram: bytes, *, tos: int = 0,
                 df: bool = False) -> bytes:
    """Wrap an ESP datagram in the SA's outer IP header, in UDP when the SA says so."""
    # IPv4 counts its header in the total length, IPv6 only the payload.
    payload = len(datagram) + (8 if sa.encap is not None else 0)
    if payload + (20 if sa.family == 4 else 0) > 0xFFFF:
        _too_long(sa, payload + (20 if sa.family == 4 else 40))
    if sa.encap is not None:
        datagram = udp_header(sa.encap.sport, sa.encap.dport, datagram, sa.src,
                              sa.dst) + datagram
    return sa.outer.build(len(datagram), tos, sa.next_ident(), df) + datagram


def inner_packet(sa: SecurityAssociation, result: Unprotected,
                 outer: ip.IPHeader | None) -> Unprotected:
    """Turn an unprotected payload into the IP packet the receiver delivers.

    Tunnel mode: the payload is the inner packet; anything after its own length is TFC
    padding. Transport mode: the original packet is the outer header (``outer``, or a
    fresh one from the SA's addresses) with the next header put back (RFC 4303 §3.1.1).
    """
    payload = result.payload
    if sa.mode is Mode.TUNNEL:
        if result.next_header not in (ip.PROTO_IPV4, ip.PROTO_IPV6):
            result.status = Status.MALFORMED
            result.detail = f"tunnel mode SA, but next header is {result.next_header}"
            return result
        length = ip.packet_length(payload) if len(payload) >= 20 else 0
        if not 20 <= length <= len(payload) \
                or payload[0] >> 4 != (4 if result.next_header == ip.PROTO_IPV4 else 6):
            result.status = Status.MALFORMED
            result.detail = "the inner packet's header does not fit what ESP carried"
            return result
        result.inner = payload[:length] if length < len(payload) else payload
        return result
    if outer is None:
        fresh = ip.ip_header(sa.src, sa.dst, result.next_header, len(payload))
        outer = ip.parse_header(fresh + payload)
    packet = ip.with_payload(outer, result.next_header, payload)
    if sa.encap is not None:
        packet = ip.fix_transport_checksum(packet)
    result.inner = packet
    return result


def decapsulate(sa: SecurityAssociation, packet: bytes) -> Unprotected:
    """Check and strip ESP from a whole IP packet (ESP directly in IP, or in UDP).

    Every IPv6 extension header in front of ESP is walked, Destination Options too
    (RFC 4303 §3.1.1 lets a sender put them before ESP); in transport mode they stay in
    the delivered packet.
    """
    compiled = sa.compiled
    if compiled is not None and sa.mode is _TUNNEL:
        # The fused path below, in C (ipsec/fastpath.py); None: not decided there.
        result = compiled.decapsulate(sa, packet)
        if type(result) is tuple:  # authentic, but the trailer needs a closer look
            result = _trailer(sa, result[2], result[0], result[1])
            return inner_packet(sa, result, None) if result.status is _STATUS_OK else result
        if result is not None:
            return result
    fast = sa.fast_aead
    if fast is not None and sa.mode is _TUNNEL and len(packet) >= 56:
        # The gateway's common case, fused: IPv4 outer header without options, an AEAD SA
        # without ESN, the next packet in order. Anything unusual takes the general path.
        first, total, proto, spi, seq = _V4_ESP.unpack_from(packet)
        replay = sa.replay
        if (first == 0x45 and proto == 50 and seq > replay.highest
                and 56 <= total <= len(packet)):
            try:
                plaintext = fast[1](fast[2] + packet[28:36], packet[36:total], packet[20:28])
            except InvalidTag:
                sa.counters.auth_failed += 1
                return Unprotected(Status.AUTH_FAILED, spi, seq, sa=sa, detail="ICV mismatch")
            replay.update(seq)
            # total >= 56 leaves at least 4 octets of plaintext (the ICV is at most 16).
            pad = plaintext[-2]
            end = len(plaintext) - 2 - pad
            # One endswith() checks padding, pad length and next header (IPv4) at once.
            if (pad < 16 and plaintext.endswith(_TRAILERS_IPV4[pad]) and end >= 20
                    and plaintext[0] >> 4 == 4 and ((plaintext[2] << 8) | plaintext[3]) == end):
                inner = plaintext[:end]
                counters = sa.counters
                counters.packets += 1
                counters.bytes += end
                return Unprotected(_STATUS_OK, spi, seq, 4, inner, inner, sa)
            result = _trailer(sa, plaintext, spi, seq)
            return inner_packet(sa, result, None) if result.status is Status.OK else result
    if (sa.mode is Mode.TUNNEL and len(packet) >= 28 and packet[0] == 0x45
            and packet[9] == ip.PROTO_ESP):
        # IPv4 without options carrying ESP: the outer header is not needed after this.
        total = (packet[2] << 8) | packet[3]
        if 28 <= total <= len(packet):
            result = unprotect(sa, packet[20:total])
            return inner_packet(sa, result, None) if result.status is Status.OK else result
    try:
        hdr = ip.parse_inbound_header(packet)
    except ip.MalformedIP as exc:
        sa.counters.malformed += 1
        return Unprotected(Status.MALFORMED, detail=str(exc))
    if hdr.next_header not in (ip.PROTO_ESP, ip.PROTO_UDP):
        # Not ESP at all: a malformed packet for this SA, not a forgery (RFC 4303 §3.4).
        sa.counters.malformed += 1
        return Unprotected(Status.MALFORMED,
                           detail=f"next header is {hdr.next_header}, not ESP or UDP")
    start = hdr.header_length + (8 if hdr.next_header == ip.PROTO_UDP else 0)
    result = unprotect(sa, packet[start : hdr.total_length])
    if result.status is not Status.OK:
        return result
    return inner_packet(sa, result, hdr)
