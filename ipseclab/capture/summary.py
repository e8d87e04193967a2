"""One readable line per decoded frame, like a terse Wireshark packet list."""

from __future__ import annotations

from ipseclab.capture.decode import DecodedFrame
from ipseclab.ipsec.selectors import MalformedPacket, parse_fields

_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 50: "ESP", 51: "AH"}
_ICMP_TYPES = {(1, 8): "echo request", (1, 0): "echo reply", (58, 128): "echo request",
               (58, 129): "echo reply"}


def packet_summary(packet: bytes) -> str:
    """``ICMP 10.1.0.1 > 10.2.0.1 echo request``, ``UDP 10.1.0.1:5 > 10.2.0.1:50000``."""
    try:
        f = parse_fields(packet)
    except MalformedPacket as exc:
        return f"(unreadable: {exc})"
    name = _PROTO_NAMES.get(f.proto, f"proto {f.proto}")
    if f.sport is not None:
        return f"{name} {f.src_addr}:{f.sport} > {f.dst_addr}:{f.dport}"
    text = f"{name} {f.src_addr} > {f.dst_addr}"
    if f.icmp_type is not None:
        text += " " + _ICMP_TYPES.get((f.proto, f.icmp_type), f"type {f.icmp_type}")
    return text


def frame_line(frame: DecodedFrame) -> str:
    """One line per frame; an IKE frame reads
    ``IKE_AUTH #1 request from initiator: SK{IDi, AUTH, SA, TSi, TSr}``."""
    head = f"{frame.frame:6d} {frame.time:14.6f}  {frame.proto:5s} {frame.status:12s}"
    if frame.proto in ("esp", "ah") and frame.spi is not None:
        head += f" spi 0x{frame.spi:08x} seq {frame.seq}"
    if frame.src:
        head += f"  {frame.src} > {frame.dst}"
    if frame.udp_encap:
        head += " (UDP 4500)"
    if frame.ike is not None:
        head += "  " + frame.ike.describe()
        if frame.status not in ("ok", "malformed"):
            head += f"  ({frame.detail})"
    elif frame.inner_bytes is not None:
        head += f"  [{frame.mode}] {packet_summary(frame.inner_bytes)}"
    elif frame.detail and (frame.status != "ok" or frame.src is None):
        head += f"  ({frame.detail})"
    return head
