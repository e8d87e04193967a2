"""A plain-language walk through one ESP or AH packet, field by field, with its real values.

:func:`explain` reads a packet through :func:`~ipseclab.teaching.bytemap.byte_map` and says,
for each field, what it holds, why it is there and which RFC section says so: RFC 4303 for
ESP, RFC 4302 for AH, RFC 3948 for ESP in UDP, RFC 4301 for the modes. Given the SA it also
tells what only the receiver can see: the padding, the pad length and the next header.
"""

from __future__ import annotations

from ipseclab.capture.decode import DecodedFrame, KeyRing
from ipseclab.ipsec import ip
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.teaching.bytemap import ByteMap, Span, byte_map

_NAMES = {1: "ICMP", 4: "IPv4", 6: "TCP", 17: "UDP", 41: "IPv6", 50: "ESP", 51: "AH",
          58: "ICMPv6", 59: "no next header (a dummy packet, RFC 4303 §2.6)"}


def _range(span: Span | tuple[int, int]) -> str:
    start, end = (span.start, span.end) if isinstance(span, Span) else span
    return f"bytes {start}-{end - 1}" if end - start > 1 else f"byte {start}"


def _hex(data: bytes, limit: int = 16) -> str:
    return data[:limit].hex(" ") + (" ..." if len(data) > limit else "")


def _iv_reason(bmap: ByteMap, sa: object) -> str:
    alg = getattr(sa, "encryption", None)
    if alg is None:
        return "its size depends on the algorithm (RFC 4303 §2.3)"
    if alg.counter_iv:
        return (f"{alg.keyword} must never use an IV twice under one key; like Linux, ipseclab"
                " takes the sequence number (RFC 4106 §3.1, RFC 4303 §2.3)")
    if alg.keyword == "null":
        return "null encryption has no IV (RFC 2410)"
    return f"{alg.keyword} in CBC mode needs a random, unpredictable IV (RFC 3602 §3)"


def _outer(bmap: ByteMap, out: list[str]) -> None:
    hdr = ip.parse_inbound_header(bmap.packet)
    first = bmap.spans[0].start
    end = first + hdr.header_length
    proto = "UDP" if bmap.udp_encap else "ESP"
    out.append(
        f"{_range((first, end))}: the IPv{hdr.version} header, {hdr.src} -> {hdr.dst}, next"
        f" protocol {hdr.next_header} ({proto}). It travels in the clear and the ESP ICV does"
        " not cover it (RFC 4303 §3.1): a router may change TTL and DSCP, a NAT the addresses.")


def _esp(bmap: ByteMap, sa: object, out: list[str]) -> None:
    _outer(bmap, out)
    by_label = {s.label: s for s in bmap.spans}
    if bmap.udp_encap:
        udp = [s for s in bmap.spans if s.kind == "udp-header"]
        p = bmap.packet
        sport = int.from_bytes(p[udp[0].start : udp[0].end], "big")
        dport = int.from_bytes(p[udp[1].start : udp[1].end], "big")
        csum = int.from_bytes(p[udp[3].start : udp[3].end], "big")
        out.append(
            f"{_range((udp[0].start, udp[-1].end))}: a UDP header, port {sport} -> {dport},"
            f" checksum {csum:#06x}. ESP rides in UDP because a NAT sits on the path"
            " (RFC 3948 §2.1); a NAT can rewrite ports of UDP but not of bare ESP. On port 4500"
            " four zero bytes would mean an IKE message instead (RFC 3948 §2.2) and a lone"
            " 0xFF a NAT-keepalive (§2.3).")
    spi = by_label["SPI"]
    out.append(
        f"{_range(spi)}: SPI 0x{bmap.spi:08x} (RFC 4303 §2.1). The receiver chose it; with the"
        " destination it finds the SA, and so the keys, in the receiver's SAD (RFC 4301 §4.1).")
    seq = by_label["Sequence Number"]
    esn = isinstance(sa, SecurityAssociation) and sa.esn
    out.append(
        f"{_range(seq)}: Sequence Number {bmap.seq} (RFC 4303 §2.2). The sender counts from 1"
        " and never wraps; the receiver's anti-replay window drops duplicates (§3.4.3)."
        + (" This SA uses ESN: only the low 32 bits are sent; the high 32 bits are covered"
           " by the ICV without being sent (§2.2.1)." if esn else ""))
    for span in bmap.spans:
        if span.start < seq.end:
            continue
        _esp_field(bmap, span, sa, out)
    if bmap.verified is True:
        out.append("With the key given, the ICV verified: nobody changed a covered byte.")
    elif bmap.verified is False:
        out.append("With the key given, the ICV did NOT verify: a covered byte was changed,"
                   " or the key is wrong. A receiver drops this packet (RFC 4303 §3.4.4).")


def _esp_field(bmap: ByteMap, span: Span, sa: object, out: list[str]) -> None:
    data = bmap.clear_bytes(span)
    where = _range(span)
    if span.kind == "iv":
        out.append(f"{where}: IV {_hex(data)} ({span.length} bytes, in the clear):"
                   f" {_iv_reason(bmap, sa)}.")
    elif span.kind == "encrypted":
        out.append(
            f"{where}: {span.length} bytes of ciphertext. Payload, padding, pad length and next"
            " header are all inside (RFC 4303 §2.3 to §2.6): without the key nobody can tell"
            " where one ends and the next begins, nor even which protocol is carried.")
    elif span.kind == "payload":
        state = "encrypted" if span.encrypted else "in the clear (no confidentiality)"
        if bmap.mode == "tunnel":
            what = (f"the whole inner packet, its own IP header included (tunnel mode,"
                    f" RFC 4303 §3.1.2, RFC 4301 §4.1): {_inner_summary(data)}")
        else:
            what = (f"the {span.label} (transport mode: ESP sits between the IP header and the"
                    " upper-layer protocol, RFC 4303 §3.1.1, RFC 4301 §4.1)")
        out.append(f"{where}: Payload Data, {span.length} bytes, {state} (RFC 4303 §2.3):"
                   f" {what}.")
    elif span.kind == "tfc-padding":
        out.append(f"{where}: TFC padding, {span.length} bytes after the inner packet, to hide"
                   " the real packet length from an observer (RFC 4303 §2.7).")
    elif span.kind == "padding":
        block = getattr(getattr(sa, "encryption", None), "block_size", None)
        why = f" to a multiple of {block} bytes" if block else ""
        out.append(f"{where}: Padding, {span.length} bytes {_hex(data)} (RFC 4303 §2.4): fills"
                   f" the plaintext{why} and aligns the ICV on 4 bytes; the bytes are 1, 2, 3, ...")
    elif span.kind == "pad-length":
        out.append(f"{where}: Pad Length = {data[0]} (RFC 4303 §2.5).")
    elif span.kind == "next-header":
        name = _NAMES.get(data[0], f"protocol {data[0]}")
        mode = (" An IP packet inside means tunnel mode." if data[0] in (4, 41)
                else " Tunnel mode would show 4 (IPv4) or 41 (IPv6) here.")
        out.append(f"{where}: Next Header = {data[0]} ({name}) (RFC 4303 §2.6), hidden inside"
                   f" the ciphertext so an observer does not learn the protocol.{mode}")
    elif span.kind == "icv":
        lo, hi = bmap.icv_covers[0] if bmap.icv_covers else (0, 0)
        aead = getattr(getattr(sa, "encryption", None), "aead", False)
        how = (" The AEAD algorithm computes it with the SPI and sequence number as additional"
               " authenticated data (RFC 4106 §5)." if aead else "")
        out.append(f"{where}: ICV, {span.length} bytes (RFC 4303 §2.8). It covers"
                   f" {_range((lo, hi))}: SPI, sequence number, IV and ciphertext, not the IP"
                   f" header.{how}")


def _inner_summary(data: bytes) -> str:
    try:
        hdr = ip.parse_header(data)
    except ip.MalformedIP:
        return f"{len(data)} bytes"
    name = _NAMES.get(hdr.next_header, f"protocol {hdr.next_header}")
    return f"{name} {hdr.src} -> {hdr.dst}, {hdr.total_length} bytes"


def _ah(bmap: ByteMap, out: list[str]) -> None:
    hdr = ip.parse_inbound_header(bmap.packet)
    mutable = [s for s in bmap.spans if s.kind == "mutable"]
    names = ", ".join(f"{s.label} ({_range(s)})" for s in mutable)
    out.append(
        f"{_range((0, hdr.header_length))}: the IPv{hdr.version} header, {hdr.src} ->"
        f" {hdr.dst}, next protocol 51 (AH). AH authenticates it too, except the fields routers"
        f" change on the way, which count as zero for the ICV: {names} (RFC 4302 §3.3.3.1)."
        " The addresses are covered: a NAT that rewrites them breaks the ICV, which is why AH"
        " and NAT do not mix (RFC 3715 §2.1).")
    p = bmap.packet
    by = {s.label: s for s in bmap.spans if s.kind in ("ah-header", "ah-icv")}
    nh = p[by["Next Header"].start]
    plen = p[by["Payload Length"].start]
    out.append(f"{_range(by['Next Header'])}: Next Header = {nh} ({_NAMES.get(nh, nh)})"
               " (RFC 4302 §2.1).")
    out.append(f"{_range(by['Payload Length'])}: Payload Length = {plen}: the AH length in"
               f" 32-bit words minus 2, so {(plen + 2) * 4} bytes (RFC 4302 §2.2).")
    out.append(f"{_range(by['Reserved'])}: Reserved, zero (RFC 4302 §2.3).")
    out.append(f"{_range(by['SPI'])}: SPI 0x{bmap.spi:08x} (RFC 4302 §2.4): selects the SA at"
               " the receiver.")
    out.append(f"{_range(by['Sequence Number'])}: Sequence Number {bmap.seq} (RFC 4302 §2.5),"
               " for the anti-replay window.")
    icv = by["ICV"]
    pad = by.get("ICV padding")
    extra = (f", then {pad.length} bytes of padding to a multiple of"
             f" {4 if bmap.family == 4 else 8} bytes" if pad else "")
    out.append(f"{_range(icv)}: ICV {_hex(p[icv.start:icv.end])} ({icv.length} bytes{extra})"
               " (RFC 4302 §2.6). While it is computed the field itself counts as zero.")
    body = [s for s in bmap.spans if s.kind == "clear-auth"]
    if body:
        s = body[0]
        what = (f"the inner packet, {_inner_summary(p[s.start:s.end])} (tunnel mode,"
                " RFC 4302 §3.1.2)" if bmap.mode == "tunnel"
                else f"the {s.label} (transport mode, RFC 4302 §3.1.1)")
        out.append(f"{_range(s)}: {what}. In the clear: AH gives integrity and origin"
                   " authentication, no confidentiality (RFC 4302 §1); use ESP to hide data.")
    if bmap.verified is True:
        out.append("With the key given, the ICV verified.")
    elif bmap.verified is False:
        out.append("With the key given, the ICV did NOT verify: a covered byte changed (for"
                   " instance an address rewritten by a NAT), or the key is wrong.")


def _explain_frame(frame: DecodedFrame) -> str:
    rfc = "RFC 4303" if frame.proto == "esp" else "RFC 4302" if frame.proto == "ah" else ""
    lines = [f"Frame {frame.frame}: {frame.proto.upper()} {frame.src} -> {frame.dst},"
             f" status {frame.status}" + (f" ({rfc})" if rfc else "") + "."]
    if frame.spi is not None:
        lines.append(f"SPI 0x{frame.spi:08x} (RFC 4303 §2.1 / RFC 4302 §2.4) selected the SA;"
                     f" sequence number {frame.seq} (RFC 4303 §2.2).")
    if frame.udp_encap:
        lines.append("It came in UDP on port 4500 (RFC 3948 §2.1): a NAT is on the path.")
    if frame.inner_bytes is not None:
        lines.append(f"Recovered {frame.mode} mode packet (RFC 4301 §4.1):"
                     f" {_inner_summary(frame.inner_bytes)}.")
    if frame.detail:
        lines.append(frame.detail)
    return "\n".join(lines)


def explain(packet_or_frame, sa: SecurityAssociation | KeyRing | str | None = None) -> str:
    """Walk through an ESP/AH packet field by field, citing the RFC, with its actual values.

    Takes raw bytes, a Scapy packet, a :class:`ByteMap` or a decoded capture frame. With
    ``sa`` (an SA, a KeyRing or a proposal string) it says more, as a receiver would know more.
    """
    if isinstance(packet_or_frame, DecodedFrame):
        return _explain_frame(packet_or_frame)
    bmap = (packet_or_frame if isinstance(packet_or_frame, ByteMap)
            else byte_map(bytes(packet_or_frame), sa))
    out: list[str] = []
    n = len(bmap.packet)
    if bmap.protocol == "ah":
        out.append(f"An AH packet (RFC 4302), {n} bytes, {bmap.mode} mode.")
        _ah(bmap, out)
    else:
        known = f", {bmap.mode} mode" if bmap.mode else ""
        out.append(f"An ESP packet (RFC 4303){' in UDP (RFC 3948)' if bmap.udp_encap else ''},"
                   f" {n} bytes{known}.")
        _esp(bmap, sa, out)
    covered = (f"{bmap.authenticated_length} are covered by the ICV" if bmap.icv_covers
               else "which ones the ICV covers depends on the algorithm")
    out.append(f"In all: {bmap.encrypted_length} of {n} bytes are encrypted; {covered}.")
    return "\n\n".join(out)
