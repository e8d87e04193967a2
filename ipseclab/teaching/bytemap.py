"""Byte maps: which byte of a real ESP or AH packet is what, encrypted or not, authenticated or not.

A :class:`ByteMap` cuts a packet into :class:`Span` s that cover every byte once, in order.
Each span has a *kind* (its colour in a plot), a *label* (the field's name in the RFC) and two
flags: ``encrypted`` and ``authenticated`` (covered by the ICV). What can be told apart
depends on what the caller knows:

* nothing: the ESP header is readable (RFC 4303 §2.1, §2.2), the rest is one opaque span;
* the algorithm (a proposal such as ``"aes128gcm16"`` or ``"aes256-sha256"``): the IV and
  the ICV can be cut off (their sizes are the algorithm's), the ciphertext stays opaque;
* the SA (or a :class:`~ipseclab.capture.decode.KeyRing`): the ciphertext is decrypted here
  and its trailer labelled, payload, TFC padding, padding, pad length, next header
  (RFC 4303 §2.3 to §2.7).

AH encrypts nothing, so its map is complete without a key; what AH adds is which bytes of the
IP header count as zero for the ICV because routers change them (RFC 4302 §3.3.3.1).

The SA given is only read: its replay window and counters do not move.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import struct
from dataclasses import dataclass, field

from ipseclab.capture.decode import KeyRing
from ipseclab.crypto import transforms
from ipseclab.errors import AuthenticationFailed, IpsecLabError
from ipseclab.ipsec import ah, ip
from ipseclab.ipsec.ah import mutable_ranges
from ipseclab.ipsec.sa import Protocol, SecurityAssociation
from ipseclab.ipsec.udpencap import NAT_T_PORT, Udp4500Kind, classify, parse_udp
from ipseclab.teaching.demo import parse_proposal

# kind -> (legend text, colour). Colours from the Okabe-Ito palette where possible, so the
# map stays readable for colour-blind students and on a projector.
KINDS: dict[str, tuple[str, str]] = {
    "ip-header": ("IP header (clear)", "#d9d9d9"),
    "mutable": ("mutable, counts as zero for the AH ICV", "#ffffff"),
    "udp-header": ("UDP header (RFC 3948)", "#999999"),
    "esp-header": ("ESP header: SPI, sequence number", "#56b4e9"),
    "iv": ("IV", "#f0e442"),
    "encrypted": ("encrypted (need the key to see inside)", "#e69f00"),
    "payload": ("payload", "#d55e00"),
    "tfc-padding": ("TFC padding", "#f4a582"),
    "padding": ("padding", "#cc79a7"),
    "pad-length": ("pad length", "#8e63b5"),
    "next-header": ("next header", "#7f3b08"),
    "icv": ("ESP ICV", "#009e73"),
    "ah-header": ("AH header: next header, length, SPI, sequence number", "#0072b2"),
    "ah-icv": ("AH ICV (zero while computed)", "#66c2a5"),
    "clear-auth": ("authenticated but in the clear", "#b8e186"),
    "other": ("beyond the IP packet", "#f7f7f7"),
}

_NEXT_HEADER_NAMES = {1: "ICMP", 4: "IPv4", 6: "TCP", 17: "UDP", 41: "IPv6", 50: "ESP",
                      58: "ICMPv6", 59: "no next header"}
_UPPER = {1: "ICMP message", 6: "TCP segment", 17: "UDP datagram", 50: "ESP packet",
          58: "ICMPv6 message"}
_HI = struct.Struct("!I")
# Short names for fields too narrow for their full name in a grid.
_SHORT = {"Version, IHL": "V/IHL", "Total Length": "Len", "Identification": "ID",
          "Flags, Fragment Offset": "Flg/Off", "Protocol": "Pr", "Header Checksum": "Csum",
          "Source Address": "Src", "Destination Address": "Dst", "Sequence Number": "Seq",
          "Pad Length": "PL", "Next Header": "NH", "Payload Length": "Len", "Reserved": "Rsv",
          "Source Port": "SPort", "Destination Port": "DPort", "Length": "Len",
          "Checksum": "Csum", "Padding": "Pad", "Hop Limit": "Hop",
          "Version, Traffic Class, Flow Label": "V/TC/Flow",
          "Version (kept), Traffic Class, Flow Label": "V/TC/Flow", "ICV padding": "pad"}


class NotIpsec(IpsecLabError):
    """Bytes that are not an ESP, ESP-in-UDP or AH packet."""


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``start`` to ``end`` (exclusive) of a packet, one field or one region."""

    start: int
    end: int
    kind: str
    label: str
    encrypted: bool = False
    authenticated: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class ByteMap:
    """Every byte of one packet, classified. ``spans`` cover the packet once, in order."""

    packet: bytes
    protocol: str  # "esp" or "ah"
    spans: list[Span]
    icv_covers: list[tuple[int, int]] = field(default_factory=list)
    zeroed: list[tuple[int, int]] = field(default_factory=list)
    family: int = 4
    udp_encap: bool = False
    spi: int | None = None
    seq: int | None = None
    next_header: int | None = None
    mode: str | None = None
    algorithm: str | None = None
    decrypted: bool = False
    verified: bool | None = None
    plaintext: bytes | None = None
    plaintext_start: int = 0

    def spans_of(self, kind: str) -> list[Span]:
        return [s for s in self.spans if s.kind == kind]

    def length_of(self, kind: str) -> int:
        """How many bytes of this kind the packet has."""
        return sum(s.length for s in self.spans if s.kind == kind)

    def span_at(self, offset: int) -> Span:
        for s in self.spans:
            if s.start <= offset < s.end:
                return s
        raise IndexError(f"offset {offset} is outside the packet ({len(self.packet)} bytes)")

    @property
    def encrypted_length(self) -> int:
        """Bytes only the key holder can read: the ciphertext (RFC 4303 §2.3 to §2.6)."""
        return sum(s.length for s in self.spans if s.encrypted)

    @property
    def authenticated_length(self) -> int:
        return sum(end - start for start, end in self.icv_covers)

    def zeroed_offsets(self) -> set[int]:
        return {i for start, end in self.zeroed for i in range(start, end)}

    def clear_bytes(self, span: Span) -> bytes:
        """The span's bytes as the receiver reads them: decrypted when the map has the key."""
        if span.encrypted and self.plaintext is not None:
            off = self.plaintext_start
            return self.plaintext[span.start - off : span.end - off]
        return self.packet[span.start : span.end]

    def table(self, hex_bytes: int = 8, *, decrypted: bool = False) -> str:
        """One line per span: offset, length, field, and the first bytes in hex.

        ``decrypted=True`` shows encrypted spans as the receiver reads them after decryption.
        """
        lines = [f"{'offset':>6} {'len':>4}  {'E':1} {'A':1}  {'field':34} bytes"
                 + (" (decrypted)" if decrypted and self.plaintext is not None else "")]
        for s in self.spans:
            data = self.clear_bytes(s) if decrypted else self.packet[s.start : s.end]
            shown = data[:hex_bytes].hex(" ") + (" ..." if len(data) > hex_bytes else "")
            lines.append(f"{s.start:6d} {s.length:4d}  {'E' if s.encrypted else '.'}"
                         f" {'A' if s.authenticated else '.'}  {s.label[:34]:34} {shown}")
        lines.append("E = encrypted, A = covered by the ICV")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ByteMap({self.protocol}, {len(self.packet)} bytes, {len(self.spans)} spans,"
                f" encrypted={self.encrypted_length}, authenticated={self.authenticated_length})")


# -- IP header fields ------------------------------------------------------------------------

def _ip_fields(header: bytes) -> list[tuple[int, int, str]]:
    if header[0] >> 4 == 4:
        fields = [(0, 1, "Version, IHL"), (1, 2, "TOS"), (2, 4, "Total Length"),
                  (4, 6, "Identification"), (6, 8, "Flags, Fragment Offset"), (8, 9, "TTL"),
                  (9, 10, "Protocol"), (10, 12, "Header Checksum"), (12, 16, "Source Address"),
                  (16, 20, "Destination Address")]
        if len(header) > 20:
            fields.append((20, len(header), "Options"))
        return fields
    fields = [(0, 4, "Version, Traffic Class, Flow Label"), (4, 6, "Payload Length"),
              (6, 7, "Next Header"), (7, 8, "Hop Limit"), (8, 24, "Source Address"),
              (24, 40, "Destination Address")]
    if len(header) > 40:
        fields.append((40, len(header), "Extension headers"))
    return fields


def _ip_spans(header: bytes, *, ah_rules: bool, authenticated: bool) -> list[Span]:
    """The IP header cut into its fields; with AH, mutable fields become their own kind."""
    mutable = mutable_ranges(header) if ah_rules else []
    cuts = {0, len(header)}
    for start, end, _ in _ip_fields(header) + mutable:
        cuts.update((start, end))
    bounds = sorted(c for c in cuts if 0 <= c <= len(header))
    names = _ip_fields(header)
    spans = []
    for start, end in itertools.pairwise(bounds):
        label = next((n for s, e, n in mutable if s <= start and end <= e), None)
        kind = "mutable" if label is not None else "ip-header"
        if label is None:
            label = next((n for s, e, n in names if s <= start and end <= e), "IP header")
        spans.append(Span(start, end, kind, label, authenticated=authenticated))
    return spans


# -- ESP ---------------------------------------------------------------------------------------

def _algorithms(sa: object) -> tuple[transforms.EncryptionAlgorithm | None, int | None]:
    """(encryption algorithm, ICV size) known from an SA or a proposal string."""
    if isinstance(sa, SecurityAssociation):
        return sa.encryption, sa.icv_size
    if isinstance(sa, str):
        enc, integ = parse_proposal(sa)
        icv = enc.icv_size if enc.aead else (integ.icv_size if integ else 0)
        return enc, icv
    return None, None


def _high_candidates(sa: SecurityAssociation) -> list[int]:
    if not sa.esn:
        return [0]
    base = max(sa.seq, sa.replay.highest) >> 32
    return [base, base + 1] + ([base - 1] if base else [])


def decrypt_esp(sa: SecurityAssociation, datagram: bytes) -> tuple[bytes | None, bool | None]:
    """(plaintext, ICV verified) of an ESP datagram, without touching the SA's state.

    With ESN the high 32 bits of the sequence number are not on the wire (RFC 4303 §2.2.1);
    they are guessed from the SA's counters, trying the neighbouring values as well.
    """
    enc = sa.encryption
    ivs = enc.iv_size
    if len(datagram) < 8 + ivs + sa.icv_size:
        return None, False
    iv = datagram[8 : 8 + ivs]
    header = datagram[:8]
    plain: bytes | None = None
    verified: bool | None = False
    for high in _high_candidates(sa):
        hi = _HI.pack(high)
        if enc.aead:
            aad = header[:4] + hi + header[4:] if sa.esn else header
            try:
                return sa.cipher.decrypt(iv, datagram[8 + ivs :], aad), True
            except AuthenticationFailed:
                continue
        body = datagram[: len(datagram) - sa.icv_size]
        if sa.mac is not None:
            verified = sa.mac.verify(body + hi if sa.esn else body, datagram[len(body) :])
        else:
            verified = None
        ciphertext = body[8 + ivs :]
        if len(ciphertext) % enc.block_size:
            return None, False
        try:
            plain = sa.cipher.decrypt(iv, ciphertext, b"")
        except AuthenticationFailed:
            return None, False
        if verified is not False:
            return plain, verified
    return plain, verified


def _trailer_spans(plain: bytes, start: int, *, encrypted: bool, authenticated: bool
                   ) -> tuple[list[Span], int | None]:
    """Payload, TFC padding, padding, pad length, next header (RFC 4303 §2.3 to §2.7)."""
    n = len(plain)
    if n < 2 or plain[-2] + 2 > n:
        return [], None
    pad, nh = plain[-2], plain[-1]
    end = n - 2 - pad
    inner_len = end
    if nh in (ip.PROTO_IPV4, ip.PROTO_IPV6):
        with contextlib.suppress(ip.MalformedIP):
            inner_len = min(ip.parse_header(plain[:end]).total_length, end)
    name = _NEXT_HEADER_NAMES.get(nh, f"protocol {nh}")
    what = (f"inner {name} packet" if nh in (ip.PROTO_IPV4, ip.PROTO_IPV6)
            else _UPPER.get(nh, f"{name} payload") if nh != ip.PROTO_NONE else "dummy packet")
    flags = {"encrypted": encrypted, "authenticated": authenticated}
    spans = [Span(start, start + inner_len, "payload", what, **flags)]
    if inner_len < end:
        spans.append(Span(start + inner_len, start + end, "tfc-padding", "TFC padding", **flags))
    if pad:
        spans.append(Span(start + end, start + end + pad, "padding", "Padding", **flags))
    spans.append(Span(start + n - 2, start + n - 1, "pad-length", "Pad Length", **flags))
    spans.append(Span(start + n - 1, start + n, "next-header", "Next Header", **flags))
    return [s for s in spans if s.length], nh


def _try_keys(sa: object, spi: int, datagram: bytes
              ) -> tuple[SecurityAssociation | None, bytes | None, bool | None]:
    if isinstance(sa, SecurityAssociation):
        if sa.protocol is not Protocol.ESP:
            raise NotIpsec(f"the packet is ESP, but the SA given is {sa.name}")
        plain, ok = decrypt_esp(sa, datagram)
        return sa, plain, ok
    if isinstance(sa, KeyRing):
        for cand in sa.candidates(Protocol.ESP, spi):
            plain, ok = decrypt_esp(cand, datagram)
            if plain is not None and ok is not False:
                return cand, plain, ok
    return None, None, None


def _esp_map(packet: bytes, hdr: ip.IPHeader, start: int, sa: object, bmap: ByteMap
             ) -> None:
    end = hdr.total_length
    datagram = packet[start:end]
    if len(datagram) < 8:
        raise NotIpsec("ESP header truncated")
    spi, seq = struct.unpack_from("!II", datagram)
    bmap.spi, bmap.seq = spi, seq
    key_sa, plain, verified = _try_keys(sa, spi, datagram)
    enc, icv = _algorithms(key_sa if key_sa is not None else sa)
    if enc is None and isinstance(sa, KeyRing):
        cands = sa.candidates(Protocol.ESP, spi)
        if cands:
            enc, icv = cands[0].encryption, cands[0].icv_size
    if enc is not None and len(datagram) < 8 + enc.iv_size + icv:
        raise NotIpsec("ESP packet shorter than its IV and ICV")
    covered = enc is None or icv > 0
    ivs = enc.iv_size if enc is not None else 0
    data_end = end - (icv or 0)
    auth = enc is not None and icv > 0
    spans = [Span(start, start + 4, "esp-header", "SPI", authenticated=auth),
             Span(start + 4, start + 8, "esp-header", "Sequence Number", authenticated=auth)]
    if enc is None:
        spans.append(Span(start + 8, end, "encrypted",
                          "IV, ciphertext, ICV (sizes need the algorithm)", encrypted=True))
        bmap.spans += spans
        return
    bmap.algorithm = key_sa.algorithms if key_sa is not None else (
        sa if isinstance(sa, str) else enc.keyword)
    if ivs:
        spans.append(Span(start + 8, start + 8 + ivs, "iv", "IV", authenticated=auth))
    body_start = start + 8 + ivs
    if not enc.confidential:
        plain = packet[body_start:data_end]
    trailer: list[Span] = []
    nh = None
    if plain is not None:
        trailer, nh = _trailer_spans(plain, body_start, encrypted=enc.confidential,
                                     authenticated=auth)
    if trailer:
        spans += trailer
        bmap.decrypted = enc.confidential
        bmap.plaintext = plain
        bmap.plaintext_start = body_start
        bmap.next_header = nh
        bmap.mode = "tunnel" if nh in (ip.PROTO_IPV4, ip.PROTO_IPV6) else "transport"
    elif data_end > body_start:
        spans.append(Span(body_start, data_end, "encrypted",
                          "payload, padding, pad length, next header", encrypted=True,
                          authenticated=auth))
    if icv:
        spans.append(Span(data_end, end, "icv", "ICV"))
    bmap.verified = verified if key_sa is not None else None
    bmap.spans += spans
    if covered and auth:
        bmap.icv_covers = [(start, data_end)]


# -- AH ------------------------------------------------------------------------------------------

def _ah_map(packet: bytes, sa: object, bmap: ByteMap) -> None:
    try:
        hdr, nh, spi, seq, length = ah.parse_ah(packet)
    except ip.MalformedIP as exc:
        raise NotIpsec(f"not a usable AH packet: {exc}") from None
    s = hdr.header_length
    total = hdr.total_length
    bmap.spi, bmap.seq, bmap.next_header = spi, seq, nh
    bmap.mode = "tunnel" if nh in (ip.PROTO_IPV4, ip.PROTO_IPV6) else "transport"
    spans = _ip_spans(hdr.header, ah_rules=True, authenticated=True)
    spans += [Span(s, s + 1, "ah-header", "Next Header", authenticated=True),
              Span(s + 1, s + 2, "ah-header", "Payload Length", authenticated=True),
              Span(s + 2, s + 4, "ah-header", "Reserved", authenticated=True),
              Span(s + 4, s + 8, "ah-header", "SPI", authenticated=True),
              Span(s + 8, s + 12, "ah-header", "Sequence Number", authenticated=True)]
    icv_size = sa.icv_size if isinstance(sa, SecurityAssociation) else length - 12
    icv_end = s + 12 + min(icv_size, length - 12)
    spans.append(Span(s + 12, icv_end, "ah-icv", "ICV", authenticated=True))
    if icv_end < s + length:
        spans.append(Span(icv_end, s + length, "ah-icv", "ICV padding", authenticated=True))
    name = _NEXT_HEADER_NAMES.get(nh, f"protocol {nh}")
    what = (f"inner {name} packet" if bmap.mode == "tunnel"
            else _UPPER.get(nh, f"{name} payload"))
    if total > s + length:
        spans.append(Span(s + length, total, "clear-auth", what, authenticated=True))
    bmap.spans += spans
    bmap.icv_covers = [(0, total)]
    bmap.zeroed = [(a, b) for a, b, _ in mutable_ranges(hdr.header)] + [(s + 12, s + length)]
    if isinstance(sa, SecurityAssociation) and sa.mac is not None:
        bmap.algorithm = sa.algorithms
        ah_zeroed = packet[s : s + 12] + bytes(length - 12)
        data = ah.zero_mutable(hdr.header) + ah_zeroed + packet[s + length : total]
        candidates = _high_candidates(sa)
        bmap.verified = any(
            sa.mac.verify(data + _HI.pack(h) if sa.esn else data, packet[s + 12 : icv_end])
            for h in candidates)


def byte_map(packet: bytes, sa: SecurityAssociation | KeyRing | str | None = None) -> ByteMap:
    """Classify every byte of an ESP, ESP-in-UDP (RFC 3948) or AH packet, IPv4 or IPv6.

    ``sa`` is what you know: nothing, a proposal string (sizes only), or an SA / KeyRing
    (keys: the ciphertext is decrypted here and its trailer labelled).
    """
    packet = bytes(packet)
    try:
        hdr = ip.parse_inbound_header(packet)
    except ip.MalformedIP as exc:
        raise NotIpsec(f"not an IP packet: {exc}") from None
    bmap = ByteMap(packet, "esp", [], family=hdr.version)
    start = hdr.header_length
    if hdr.next_header == ip.PROTO_AH:
        bmap.protocol = "ah"
        _ah_map(packet, sa, bmap)
    else:
        bmap.spans += _ip_spans(hdr.header, ah_rules=False, authenticated=False)
        if hdr.next_header == ip.PROTO_UDP:
            try:
                sport, dport, payload = parse_udp(packet[start : hdr.total_length])
            except ip.MalformedIP as exc:
                raise NotIpsec(str(exc)) from None
            if NAT_T_PORT not in (sport, dport) or classify(payload) is not Udp4500Kind.ESP:
                raise NotIpsec("a UDP packet, but not ESP in UDP on port 4500 (RFC 3948 §2.2)")
            bmap.udp_encap = True
            bmap.spans += [Span(start, start + 2, "udp-header", "Source Port"),
                           Span(start + 2, start + 4, "udp-header", "Destination Port"),
                           Span(start + 4, start + 6, "udp-header", "Length"),
                           Span(start + 6, start + 8, "udp-header", "Checksum")]
            start += 8
        elif hdr.next_header != ip.PROTO_ESP:
            raise NotIpsec(f"next header {hdr.next_header} is neither ESP (50) nor AH (51)")
        _esp_map(packet, hdr, start, sa, bmap)
    if hdr.total_length < len(packet):
        bmap.spans.append(Span(hdr.total_length, len(packet), "other", "after the IP packet"))
    return bmap


# -- plots ---------------------------------------------------------------------------------------

def _text_colour(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_byte_map(bmap: ByteMap, ax=None, *, width: int = 16, style: str = "grid",
                  labels: bool = True, title: str | None = None):
    """Draw a byte map; returns the matplotlib Axes.

    ``style="grid"``: one square per byte, ``width`` (16 or 32) bytes a row, as packet
    diagrams are drawn; a black line under a byte means the ICV covers it, a red line over
    it means it is encrypted, hatching means AH counts it as zero. ``style="bar"``: the
    packet as one horizontal bar, with the encrypted and authenticated ranges under it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    n = len(bmap.packet)
    if style == "bar":
        return _plot_bar(bmap, ax, title)
    if style != "grid":
        raise ValueError(f"style must be 'grid' or 'bar', not {style!r}")
    rows = math.ceil(n / width)
    if ax is None:
        cell = 0.55 if width <= 16 else 0.36
        _, ax = plt.subplots(figsize=(width * cell + 1.2, rows * cell + 2.2))
    zeroed = bmap.zeroed_offsets()
    kinds_seen: list[str] = []
    for span in bmap.spans:
        if span.kind not in kinds_seen:
            kinds_seen.append(span.kind)
        colour = KINDS[span.kind][1]
        for i in range(span.start, span.end):
            row, col = divmod(i, width)
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=colour, edgecolor="white",
                                   linewidth=0.8, hatch="///" if i in zeroed else None,
                                   hatchcolor="#555555"))
        row, col = divmod(span.start, width)
        ax.plot([col, col], [row, row + 1], color="#333333", linewidth=1.2)
        # One label per row segment of the span, where it fits.
        i = span.start
        while labels and i < span.end:
            row, col = divmod(i, width)
            seg = min(span.end, (row + 1) * width) - i
            room = seg * (3.2 if width <= 16 else 1.6)
            short = _SHORT.get(span.label, span.label.split(",")[0])
            text = (span.label if len(span.label) <= room
                    else short if len(short) <= room + 1 else "")
            if text:
                ax.text(col + seg / 2, row + 0.5, text, ha="center", va="center",
                        fontsize=7 if width <= 16 else 5.5, color=_text_colour(colour),
                        clip_on=True)
            i += seg
    for row in range(rows):
        for lo, hi in bmap.icv_covers:
            a, b = max(lo, row * width), min(hi, (row + 1) * width)
            if a < b:
                ax.plot([a - row * width + 0.05, b - row * width - 0.05], [row + 0.92] * 2,
                        color="black", linewidth=2.2, solid_capstyle="butt")
        for span in bmap.spans:
            a, b = max(span.start, row * width), min(span.end, (row + 1) * width)
            if span.encrypted and a < b:
                ax.plot([a - row * width + 0.05, b - row * width - 0.05], [row + 0.08] * 2,
                        color="#b2182b", linewidth=2.2, solid_capstyle="butt")
    ax.set_xlim(0, width)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")
    ax.set_xticks([c + 0.5 for c in range(0, width, 4)], [str(c) for c in range(0, width, 4)],
                  fontsize=7)
    ax.set_yticks([r + 0.5 for r in range(rows)], [str(r * width) for r in range(rows)],
                  fontsize=7)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_ylabel("byte offset", fontsize=8)
    handles = [Patch(facecolor=KINDS[k][1], edgecolor="#666666", label=KINDS[k][0],
                     hatch="///" if k in ("mutable", "ah-icv") else None, hatchcolor="#555555")
               for k in kinds_seen]
    if any(s.encrypted for s in bmap.spans):
        handles.append(Line2D([], [], color="#b2182b", linewidth=2.2, label="encrypted"))
    if bmap.icv_covers:
        handles.append(Line2D([], [], color="black", linewidth=2.2, label="covered by the ICV"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2,
              fontsize=7, frameon=False)
    ax.set_title(title or _title(bmap), fontsize=9)
    return ax


def _title(bmap: ByteMap) -> str:
    parts = [bmap.protocol.upper() + (" in UDP" if bmap.udp_encap else ""),
             f"IPv{bmap.family}", f"{len(bmap.packet)} bytes"]
    if bmap.mode:
        parts.append(bmap.mode + " mode")
    if bmap.algorithm:
        parts.append(bmap.algorithm)
    return ", ".join(parts)


def _plot_bar(bmap: ByteMap, ax, title: str | None):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 2.4))
    kinds_seen: list[str] = []
    for span in bmap.spans:
        if span.kind not in kinds_seen:
            kinds_seen.append(span.kind)
        colour = KINDS[span.kind][1]
        ax.barh(2, span.length, left=span.start, height=0.8, color=colour, edgecolor="white",
                linewidth=0.5, hatch="///" if span.kind == "mutable" else None,
                hatchcolor="#555555")
    n = len(bmap.packet)
    merged: list[tuple[int, int, str]] = []
    for span in bmap.spans:
        if merged and merged[-1][2] == span.kind and merged[-1][1] == span.start:
            merged[-1] = (merged[-1][0], span.end, span.kind)
        else:
            merged.append((span.start, span.end, span.kind))
    for start, end, kind in merged:
        if (end - start) / n > 0.06:
            ax.text((start + end) / 2, 2, f"{end - start}", ha="center", va="center",
                    fontsize=7, color=_text_colour(KINDS[kind][1]))
    enc = [(s.start, s.length) for s in bmap.spans if s.encrypted]
    ax.broken_barh(enc, (0.8, 0.35), color="#b2182b")
    ax.broken_barh([(a, b - a) for a, b in bmap.icv_covers], (0.2, 0.35), color="black")
    ax.set_yticks([0.375, 0.975, 2], ["ICV covers", "encrypted", "packet"], fontsize=8)
    ax.set_xlim(0, n)
    ax.set_ylim(0, 2.5)
    ax.set_xlabel("byte offset", fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    handles = [Patch(facecolor=KINDS[k][1], edgecolor="#666666", label=KINDS[k][0],
                     hatch="///" if k == "mutable" else None, hatchcolor="#555555")
               for k in kinds_seen]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3,
              fontsize=7, frameon=False)
    ax.set_title(title or _title(bmap), fontsize=9)
    return ax
