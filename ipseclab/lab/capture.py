"""Packet captures: tcpdump per link, and a small pcap reader for the scenario checks.

A capture runs ``tcpdump -i IFACE -w FILE --immediate-mode -U`` in the namespace that owns the
interface and is only considered started once tcpdump says "listening on" (before that, packets
would be missed). It is stopped by its PID. The reader below understands the classic pcap format
tcpdump writes, with Ethernet framing, enough to say what protocol each IP packet carries.
"""

from __future__ import annotations

import ipaddress
import select
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ipseclab.errors import IpsecLabError

LISTEN_TIMEOUT = 5.0


class Capture:
    """One running tcpdump; ``stop()`` returns the pcap path."""

    def __init__(
        self,
        name: str,
        iface: str,
        path: Path,
        popen: Callable[[list[str]], subprocess.Popen[bytes]],
    ) -> None:
        self.name = name
        self.iface = iface
        self.path = path
        self.summary = ""
        # -Z root: tcpdump would otherwise drop to its own user and may not write here.
        args = ["tcpdump", "-i", iface, "-w", str(path), "--immediate-mode", "-U", "-n",
                "-Z", "root", "-s", "0"]
        self.proc = popen(args)
        self._wait_listening()

    def _wait_listening(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        seen = b""
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while b"listening on" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.proc.kill()
                self.proc.wait()
                msg = seen.decode(errors="replace").strip().splitlines()
                raise IpsecLabError(
                    f"tcpdump on {self.iface} did not start: {msg[-1] if msg else 'no output'}"
                )
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = self.proc.stderr.read1(4096)  # type: ignore[attr-defined]
                if not chunk:
                    continue
                seen += chunk

    def stop(self) -> Path:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                _, err = self.proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            lines = [ln for ln in err.decode(errors="replace").splitlines() if "captured" in ln]
            self.summary = lines[0] if lines else ""
        return self.path


# --- reading --------------------------------------------------------------------------------

ETH_IPV4, ETH_ARP, ETH_IPV6, ETH_VLAN = 0x0800, 0x0806, 0x86DD, 0x8100
_V6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options: skip to the real header
_ICMPV6_LINK_CONTROL = {130, 131, 132, 133, 134, 135, 136, 137, 143}  # MLD and ND
PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 50: "ESP", 51: "AH", 58: "ICMPv6"}


@dataclass(frozen=True)
class Frame:
    """What the checks need to know about one captured frame."""

    data: bytes
    kind: str  # "ipv4", "ipv6", "arp" or "other"
    proto: int | None = None
    src: str = ""
    dst: str = ""
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None

    @property
    def link_control(self) -> bool:
        """ARP, IGMP, or IPv6 neighbour discovery and multicast listener (MLD) messages."""
        if self.kind == "arp" or (self.kind == "ipv4" and self.proto == 2):
            return True
        return self.kind == "ipv6" and self.proto == 58 and self.icmp_type in _ICMPV6_LINK_CONTROL

    @property
    def is_ipsec(self) -> bool:
        """ESP, AH, or IKE / UDP-encapsulated ESP (UDP 500 or 4500 on either side)."""
        if self.proto in (50, 51):
            return True
        return self.proto == 17 and bool({self.sport, self.dport} & {500, 4500})

    def describe(self) -> str:
        name = PROTO_NAMES.get(self.proto or -1, f"proto {self.proto}")
        ports = f" ports {self.sport}>{self.dport}" if self.sport is not None else ""
        return f"{name} {self.src} > {self.dst}{ports}"


def read_pcap(path: Path) -> Iterator[bytes]:
    """The frames of a classic pcap file (either byte order, micro- or nanosecond stamps)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise IpsecLabError(f"{path}: not a pcap file (pcapng is not read here)")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != 1:
        raise IpsecLabError(f"{path}: link type {linktype}, expected Ethernet (1)")
    rec = struct.Struct(endian + "IIII")
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = rec.unpack_from(data, off)
        off += 16
        yield data[off : off + incl]
        off += incl


def classify(frame: bytes) -> Frame:
    if len(frame) < 14:
        return Frame(frame, "other")
    (etype,) = struct.unpack_from("!H", frame, 12)
    off = 14
    while etype == ETH_VLAN and len(frame) >= off + 4:
        (etype,) = struct.unpack_from("!H", frame, off + 2)
        off += 4
    if etype == ETH_ARP:
        return Frame(frame, "arp")
    if etype == ETH_IPV4 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        src = ".".join(str(b) for b in frame[off + 12 : off + 16])
        dst = ".".join(str(b) for b in frame[off + 16 : off + 20])
        if struct.unpack_from("!H", frame, off + 6)[0] & 0x1FFF:
            return Frame(frame, "ipv4", proto, src, dst)  # a later fragment: no L4 header
        return _transport(frame, "ipv4", proto, src, dst, off + ihl)
    if etype == ETH_IPV6 and len(frame) >= off + 40:
        proto = frame[off + 6]
        src = str(ipaddress.IPv6Address(frame[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(frame[off + 24 : off + 40]))
        l4 = off + 40
        while proto in _V6_EXT and len(frame) >= l4 + 2:
            proto, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
        return _transport(frame, "ipv6", proto, src, dst, l4)
    return Frame(frame, "other")


def _transport(frame: bytes, kind: str, proto: int, src: str, dst: str, l4: int) -> Frame:
    sport = dport = icmp_type = None
    if proto in (6, 17) and len(frame) >= l4 + 4:
        sport, dport = struct.unpack_from("!HH", frame, l4)
    elif proto in (1, 58) and len(frame) > l4:
        icmp_type = frame[l4]
    return Frame(frame, kind, proto, src, dst, sport, dport, icmp_type)


def frames(path: Path) -> list[Frame]:
    """Classified frames; a later IPv4 fragment takes the ports of its first fragment
    (an IKE_AUTH with certificates is often larger than the link's MTU)."""
    out, ports = [], {}
    for raw in read_pcap(path):
        frame = classify(raw)
        key = _fragment_key(raw) if frame.kind == "ipv4" else None
        if key is not None:
            if frame.sport is not None:
                ports[key] = (frame.sport, frame.dport)
            elif key in ports:
                frame = replace(frame, sport=ports[key][0], dport=ports[key][1])
        out.append(frame)
    return out


def _fragment_key(frame: bytes) -> tuple[bytes, int] | None:
    """(addresses, protocol and IP ID) of an IPv4 fragment, None if not fragmented."""
    off = 14
    if len(frame) < off + 20 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV4:
        return None
    if not struct.unpack_from("!H", frame, off + 6)[0] & 0x3FFF:  # MF clear, offset 0
        return None
    return frame[off + 12 : off + 20], (frame[off + 9] << 16) | struct.unpack_from(
        "!H", frame, off + 4)[0]
