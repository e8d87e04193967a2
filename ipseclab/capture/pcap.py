"""Reading pcap and pcapng capture files, writing pcap, and finding the IP packet in a frame.

Every link the lab captures is a file a student opens in Wireshark, and the teaching layer
decodes the same file in Python. This module is the shared ground: a reader fast enough for
captures of a few hundred thousand packets, and a writer whose files Wireshark, tshark and
Scapy read.

Formats (field layouts from the format specifications, not from any implementation):

* classic pcap (libpcap's ``savefile`` format, draft-ietf-opsawg-pcap): a 24-byte file header
  whose magic gives the byte order and the timestamp unit (microseconds ``a1b2c3d4``,
  nanoseconds ``a1b23c4d``), then records of a 16-byte header and the captured bytes.
* pcapng (draft-ietf-opsawg-pcapng): blocks of ``type, total length, body, total length``.
  A Section Header Block (SHB) starts each section and sets its byte order; Interface
  Description Blocks (IDB) give each interface's link type and timestamp resolution
  (``if_tsresol``, ``if_tsoffset``); packets come in Enhanced (EPB), Simple (SPB) and the
  obsolete Packet Blocks (PB). Unknown blocks are skipped. A file may hold several sections.

Errors: a file that is neither format, a malformed header, or a record cut short raises
:class:`CaptureError` naming the file and the byte offset. :func:`read_capture` is a
generator: every complete frame before the damage is yielded first, and the error is raised
only when the caller asks for the frame that cannot be read. A decoder that wants
"everything readable, then one line saying what went wrong" iterates inside ``try``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from ipseclab.errors import IpsecLabError

__all__ = [
    "IP_LINKTYPES",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "CaptureError",
    "Frame",
    "PcapWriter",
    "ip_offset",
    "ip_payload",
    "read_capture",
    "write_pcap",
]

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW is 12 on most systems and 14 on OpenBSD; libpcap maps both to LINKTYPE_RAW,
# but old files carry the DLT value.
_RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, 12, 14})
# Every link type :func:`ip_offset` finds IP in; frames of others are not read at all.
IP_LINKTYPES = _RAW_IP_LINKTYPES | {LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
                                    LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL,
                                    LINKTYPE_LOOP}

_CHUNK = 1 << 20
# Far above any real snapshot length; a larger length field means a damaged file, and
# refusing it keeps random bytes from asking for gigabytes of memory.
_MAX_RECORD = 1 << 26
_DEFAULT_SNAPLEN = 262144


class CaptureError(IpsecLabError):
    """A capture file that cannot be read (or written): not a capture, damaged, or cut short.

    ``file`` and ``offset`` (bytes from the start of the file) locate the problem.
    """

    def __init__(self, message: str, *, file: str | None = None, offset: int | None = None):
        self.message = message
        self.file = file
        self.offset = offset
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f" at byte {self.offset}" if self.offset is not None else "")
            where += ": "
        elif self.offset is not None:
            where = f"at byte {self.offset}: "
        return where + self.message


@dataclass(slots=True)
class Frame:
    """One captured frame. ``number`` counts from 1 over the whole file, as Wireshark does."""

    number: int
    timestamp: float
    linktype: int
    data: bytes
    orig_len: int


# --------------------------------------------------------------------------- reading

_PCAP_MAGICS: dict[bytes, tuple[str, int, int]] = {
    # magic as stored -> (struct byte order, timestamp fraction divisor, record header size)
    bytes.fromhex("d4c3b2a1"): ("<", 1_000_000, 16),
    bytes.fromhex("a1b2c3d4"): (">", 1_000_000, 16),
    bytes.fromhex("4d3cb2a1"): ("<", 1_000_000_000, 16),
    bytes.fromhex("a1b23c4d"): (">", 1_000_000_000, 16),
    # Alexey Kuznetzov's modified pcap: four more bytes of ifindex, protocol, pkt_type, pad.
    bytes.fromhex("34cdb2a1"): ("<", 1_000_000, 24),
    bytes.fromhex("a1b2cd34"): (">", 1_000_000, 24),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
_BOM_BIG = b"\x1a\x2b\x3c\x4d"

_BT_IDB = 1
_BT_PB = 2
_BT_SPB = 3
_BT_EPB = 6
_BT_SHB = 0x0A0D0D0A
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


def read_capture(path: str | os.PathLike[str]) -> Iterator[Frame]:
    """Yield the frames of a pcap or pcapng file, whichever it is.

    Frames come out in file order. On a damaged or truncated file, all complete frames
    before the damage are yielded and then :class:`CaptureError` is raised (see the module
    docstring). Opening errors (missing file, no permission) are CaptureErrors too.
    """
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed in finally, the generator may pause
    except OSError as e:
        raise CaptureError(f"cannot open: {e.strerror or e}", file=name) from None
    try:
        try:
            buf = f.read(_CHUNK)
        except OSError as e:
            raise CaptureError(f"cannot read: {e.strerror or e}", file=name) from None
        magic = buf[:4]
        if magic in _PCAP_MAGICS:
            yield from _pcap_frames(f, name, buf)
        elif magic == _PCAPNG_SHB:
            yield from _pcapng_frames(f, name, buf)
        elif len(buf) == 0:
            raise CaptureError("empty file, not a pcap or pcapng capture", file=name, offset=0)
        else:
            raise CaptureError(
                f"not a pcap or pcapng file (starts with {magic.hex()})", file=name, offset=0
            )
    finally:
        f.close()


def _refill(f: BinaryIO, buf: bytes, pos: int, need: int) -> bytes:
    """The unread rest of ``buf`` plus enough of the file to hold ``need`` bytes, if it has them."""
    rest = buf[pos:]
    return rest + f.read(max(_CHUNK, need - len(rest)))


def _pcap_frames(f: BinaryIO, name: str, buf: bytes) -> Iterator[Frame]:
    if len(buf) < 24:
        raise CaptureError("pcap file header cut short", file=name, offset=len(buf))
    order, divisor, rec_size = _PCAP_MAGICS[buf[:4]]
    _vmaj, _vmin, _zone, _sigfigs, _snaplen, network = struct.unpack_from(order + "HHiIII", buf, 4)
    # The upper bits of the link-type field carry FCS information; the link type is the low 16.
    linktype = network & 0xFFFF
    unpack = struct.Struct(order + "IIII").unpack_from
    pos = 24
    base = 0  # file offset of buf[0]
    number = 0
    while True:
        if len(buf) - pos < rec_size:
            buf = _refill(f, buf, pos, rec_size)
            base += pos
            pos = 0
            if not buf:
                return
            if len(buf) < rec_size:
                raise CaptureError(
                    f"record header of frame {number + 1} cut short", file=name, offset=base
                )
        sec, frac, incl, orig = unpack(buf, pos)
        start = pos + rec_size
        end = start + incl
        if end > len(buf):
            if incl > _MAX_RECORD:
                raise CaptureError(
                    f"frame {number + 1} claims an impossible length {incl}",
                    file=name,
                    offset=base + pos,
                )
            buf = _refill(f, buf, pos, rec_size + incl)
            base += pos
            pos = 0
            start = rec_size
            end = start + incl
            if end > len(buf):
                raise CaptureError(
                    f"frame {number + 1} cut short ({len(buf) - start} of {incl} bytes)",
                    file=name,
                    offset=base,
                )
        number += 1
        yield Frame(number, sec + frac / divisor, linktype, buf[start:end], orig)
        pos = end


class _Section:
    """Structs and interfaces of one pcapng section (each SHB may switch the byte order)."""

    __slots__ = ("epb", "hdr", "ifaces", "opt", "order", "pb", "u32")

    def __init__(self, order: str) -> None:
        self.order = order
        self.hdr = struct.Struct(order + "II")
        self.epb = struct.Struct(order + "IIIII")
        self.pb = struct.Struct(order + "HHIIII")
        self.opt = struct.Struct(order + "HH")
        self.u32 = struct.Struct(order + "I")
        # Per interface: (link type, ticks per second, offset in seconds).
        self.ifaces: list[tuple[int, int, int]] = []


def _pcapng_frames(f: BinaryIO, name: str, buf: bytes) -> Iterator[Frame]:
    pos = 0
    base = 0
    number = 0
    sec: _Section | None = None
    while True:
        if len(buf) - pos < 12:
            buf = _refill(f, buf, pos, 12)
            base += pos
            pos = 0
            if not buf:
                return
            if len(buf) < 12:
                raise CaptureError("pcapng block header cut short", file=name, offset=base)
        if buf[pos : pos + 4] == _PCAPNG_SHB:
            bom = buf[pos + 8 : pos + 12]
            if bom == _BOM_LITTLE:
                sec = _Section("<")
            elif bom == _BOM_BIG:
                sec = _Section(">")
            else:
                raise CaptureError(
                    f"pcapng section header has a bad byte-order magic {bom.hex()}",
                    file=name,
                    offset=base + pos + 8,
                )
        elif sec is None:  # pragma: no cover - the sniffing guarantees an SHB first
            raise CaptureError("pcapng file does not start with a section header", file=name)
        btype, blen = sec.hdr.unpack_from(buf, pos)
        if blen < 12 or blen % 4 or blen > _MAX_RECORD:
            raise CaptureError(
                f"pcapng block of type {btype:#x} has a bad length {blen}",
                file=name,
                offset=base + pos + 4,
            )
        if len(buf) - pos < blen:
            buf = _refill(f, buf, pos, blen)
            base += pos
            pos = 0
            if len(buf) < blen:
                raise CaptureError(
                    f"pcapng block of type {btype:#x} cut short ({len(buf)} of {blen} bytes)",
                    file=name,
                    offset=base,
                )
        end = pos + blen
        if sec.u32.unpack_from(buf, end - 4)[0] != blen:
            raise CaptureError(
                f"pcapng block of type {btype:#x}: trailing length does not match {blen}",
                file=name,
                offset=base + end - 4,
            )
        body = pos + 8
        if btype == _BT_EPB:
            if blen < 32:
                raise CaptureError("enhanced packet block too short", file=name, offset=base + pos)
            iface, hi, lo, caplen, origlen = sec.epb.unpack_from(buf, body)
            if caplen > blen - 32:
                raise CaptureError(
                    f"enhanced packet block: captured length {caplen} exceeds the block",
                    file=name,
                    offset=base + pos,
                )
            lt, tps, off = _interface(sec, iface, name, base + pos)
            number += 1
            start = body + 20
            yield Frame(
                number, ((hi << 32) | lo) / tps + off, lt, buf[start : start + caplen], origlen
            )
        elif btype == _BT_SPB:
            if blen < 16:
                raise CaptureError("simple packet block too short", file=name, offset=base + pos)
            origlen = sec.u32.unpack_from(buf, body)[0]
            caplen = min(origlen, blen - 16)
            lt, _tps, _off = _interface(sec, 0, name, base + pos)
            number += 1
            # A simple packet block carries no timestamp; 0.0 stands for "unknown".
            yield Frame(number, 0.0, lt, buf[body + 4 : body + 4 + caplen], origlen)
        elif btype == _BT_IDB:
            sec.ifaces.append(_parse_idb(sec, buf, body, end - 4, name, base))
        elif btype == _BT_PB:
            if blen < 32:
                raise CaptureError("packet block too short", file=name, offset=base + pos)
            iface, _drops, hi, lo, caplen, origlen = sec.pb.unpack_from(buf, body)
            if caplen > blen - 32:
                raise CaptureError(
                    f"packet block: captured length {caplen} exceeds the block",
                    file=name,
                    offset=base + pos,
                )
            lt, tps, off = _interface(sec, iface, name, base + pos)
            number += 1
            start = body + 20
            yield Frame(
                number, ((hi << 32) | lo) / tps + off, lt, buf[start : start + caplen], origlen
            )
        elif btype == _BT_SHB:
            if blen < 28:
                raise CaptureError("section header block too short", file=name, offset=base + pos)
            major = struct.unpack_from(sec.order + "H", buf, body + 4)[0]
            if major != 1:
                raise CaptureError(
                    f"pcapng major version {major} is not supported", file=name, offset=base + pos
                )
        pos = end


def _interface(sec: _Section, iface: int, name: str, offset: int) -> tuple[int, int, int]:
    try:
        return sec.ifaces[iface]
    except IndexError:
        raise CaptureError(
            f"packet refers to interface {iface}, but the section describes only {len(sec.ifaces)}",
            file=name,
            offset=offset,
        ) from None


def _parse_idb(
    sec: _Section, buf: bytes, body: int, opts_end: int, name: str, base: int
) -> tuple[int, int, int]:
    if opts_end - body < 8:
        raise CaptureError("interface description block too short", file=name, offset=base + body)
    linktype = struct.unpack_from(sec.order + "H", buf, body)[0]
    ticks = 1_000_000  # default resolution: microseconds
    offset = 0
    p = body + 8
    while p + 4 <= opts_end:
        code, length = sec.opt.unpack_from(buf, p)
        p += 4
        if code == 0:  # opt_endofopt
            break
        if p + length > opts_end:
            raise CaptureError("interface option runs past its block", file=name, offset=base + p)
        if code == _OPT_IF_TSRESOL and length >= 1:
            v = buf[p]
            ticks = 2 ** (v & 0x7F) if v & 0x80 else 10**v
        elif code == _OPT_IF_TSOFFSET and length >= 8:
            offset = struct.unpack_from(sec.order + "q", buf, p)[0]
        p += (length + 3) & ~3
    return linktype, ticks, offset


# --------------------------------------------------------------------------- link layers

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_ETHERTYPE_VERSION = {_ETH_IPV4: 4, _ETH_IPV6: 6}
# Address families in DLT_NULL/DLT_LOOP headers: AF_INET is 2 everywhere, AF_INET6 differs
# (Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS 30).
_AF_VERSION = {2: 4, 10: 6, 24: 6, 28: 6, 30: 6}


def ip_offset(linktype: int, data: bytes) -> int | None:
    """Offset of the IP packet inside a frame of the given link type, or None if it holds none.

    Ethernet (with any number of 802.1Q/802.1ad tags), raw IP (101, and 12/14 from old
    files), LINKTYPE_IPV4/IPV6, Linux cooked SLL and SLL2, BSD NULL and LOOP. The IP version
    nibble must agree with what the link header announces, so ARP, LLC and the like give None.
    """
    n = len(data)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return None
        off = 12
        etype = (data[12] << 8) | data[13]
        while etype in _VLAN_TPIDS:
            off += 4
            if n < off + 2:
                return None
            etype = (data[off] << 8) | data[off + 1]
        off += 2
        version = _ETHERTYPE_VERSION.get(etype)
    elif linktype in _RAW_IP_LINKTYPES:
        off = 0
        version = None
    elif linktype == LINKTYPE_IPV4:
        off, version = 0, 4
    elif linktype == LINKTYPE_IPV6:
        off, version = 0, 6
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        off = 16
        version = _ETHERTYPE_VERSION.get((data[14] << 8) | data[15])
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        off = 20
        version = _ETHERTYPE_VERSION.get((data[0] << 8) | data[1])
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return None
        if linktype == LINKTYPE_LOOP:
            af = int.from_bytes(data[:4], "big")
        else:
            # DLT_NULL is in the capturing host's byte order; a family never exceeds 16 bits.
            af = int.from_bytes(data[:4], "little")
            if af > 0xFFFF:
                af = int.from_bytes(data[:4], "big")
        off = 4
        version = _AF_VERSION.get(af)
    else:
        return None
    if n <= off:
        return None
    nibble = data[off] >> 4
    if version is None:
        if linktype not in _RAW_IP_LINKTYPES or nibble not in (4, 6):
            return None
    elif nibble != version:
        return None
    return off


def ip_payload(linktype: int, data: bytes) -> bytes | None:
    """The IP packet inside a frame, or None for frames that carry no IP (ARP, LLDP, ...).

    Ethernet pads short frames to 60 bytes; the padding is cut off using the IP header's
    length field (IPv4 Total Length, IPv6 Payload Length + 40) so that, for example, an ESP
    packet ends with its ICV. A frame captured shorter than that length is returned as is.
    """
    off = ip_offset(linktype, data)
    if off is None:
        return None
    avail = len(data) - off
    if data[off] >> 4 == 4:
        length = (data[off + 2] << 8) | data[off + 3] if avail >= 4 else 0
    else:
        length = ((data[off + 4] << 8) | data[off + 5]) + 40 if avail >= 6 else 0
    if 0 < length < avail:
        return data[off : off + length]
    return data[off:]


# --------------------------------------------------------------------------- writing


class PcapWriter:
    """Write a classic pcap file, one record per :meth:`write`.

    Use as a context manager. Microsecond timestamps by default (what every tool reads);
    ``nanosecond=True`` writes the ``a1b23c4d`` magic instead. Records are buffered; call
    :meth:`flush` to let a reader that follows the file see them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        linktype: int = LINKTYPE_RAW,
        *,
        nanosecond: bool = False,
        snaplen: int = _DEFAULT_SNAPLEN,
    ) -> None:
        self.path = os.fspath(path)
        self.linktype = linktype
        self.snaplen = snaplen
        self._units = 1_000_000_000 if nanosecond else 1_000_000
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        self._record = struct.Struct("<IIII")
        try:
            self._f: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise CaptureError(f"cannot create: {e.strerror or e}", file=self.path) from None
        self._f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, data: bytes, timestamp: float = 0.0) -> None:
        """Append one record; ``timestamp`` is seconds since the epoch (0 <= t < 2**32)."""
        ticks = round(timestamp * self._units)
        sec, frac = divmod(ticks, self._units)
        if not 0 <= sec < 1 << 32:
            raise CaptureError(f"timestamp {timestamp!r} does not fit in pcap", file=self.path)
        n = len(data)
        if n > self.snaplen:
            raise CaptureError(
                f"packet of {n} bytes is longer than the snapshot length {self.snaplen}",
                file=self.path,
            )
        self._f.write(self._record.pack(sec, frac, n, n))
        self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_pcap(
    path: str | os.PathLike[str],
    packets: Iterable[bytes | tuple[bytes, float] | Frame],
    linktype: int = LINKTYPE_RAW,
) -> int:
    """Write packets to a new pcap file and return how many were written.

    Each item is the frame's bytes (timestamp 0), a ``(bytes, timestamp)`` pair, or a
    :class:`Frame` (its data and timestamp; its link type must match ``linktype``).
    """
    count = 0
    with PcapWriter(path, linktype) as w:
        for item in packets:
            if isinstance(item, Frame):
                if item.linktype != linktype:
                    raise CaptureError(
                        f"frame {item.number} has link type {item.linktype}, the file {linktype}",
                        file=w.path,
                    )
                w.write(item.data, item.timestamp)
            elif isinstance(item, tuple):
                w.write(item[0], item[1])
            else:
                w.write(item)
            count += 1
    return count
