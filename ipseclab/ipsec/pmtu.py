"""Path MTU of an SA (RFC 4301 §8.2): learnt from ICMP, aged, and handed on to the sender.

A router inside the WAN whose next link is too small for an outer packet with DF set drops
it and says so: ICMP "fragmentation needed" (type 3 code 4, RFC 1191) or ICMPv6 "Packet Too
Big" (RFC 8201), quoting the start of the dropped packet. The quote holds the outer header
and the ESP/AH header, so the SPI names the outbound SA (§8.2.1); its SAD entry keeps the
path MTU and when it was learnt (§4.4.2.1 "Path MTU"). The next packet with DF set that
would not fit after protection gets an ICMP error back to its own sender, with the MTU that
is left for it inside the tunnel: the PMTU is propagated to the originator (§8.2.1).

ICMP is unauthenticated, so a quote must look like a packet we really sent before it
changes anything: our outer addresses, the SPI of an outbound SA, for ESP a sequence number
this SA used recently, a length larger than the MTU claimed; and no MTU below the floor
every IP path carries (576 octets for IPv4, RFC 791/1122; 1280 for IPv6, RFC 8200 §5).
A PMTU only ever shrinks from ICMP; it ages out after :data:`PMTU_AGE` seconds (§8.2.2, with
RFC 1191's ten minutes), so that a path that grows again is used again.

Pure functions over bytes and the SAD; :class:`ipseclab.ipsec.engine.IpsecEngine` calls them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ipseclab.ipsec import ip
from ipseclab.ipsec.sa import Mode, Protocol, SecurityAssociation
from ipseclab.ipsec.sad import SAD
from ipseclab.ipsec.udpencap import NAT_T_PORT

__all__ = ["MIN_PMTU", "PMTU_AGE", "RECENT_SEQ", "PathMtuUpdate", "inner_limit",
           "record_icmp_error"]

PMTU_AGE = 600.0  # seconds (RFC 1191 §6.3, RFC 4301 §8.2.2)
MIN_PMTU = {4: 576, 6: 1280}
RECENT_SEQ = 1 << 16  # how far behind the SA's counter a quoted sequence number may be

ICMP_UNREACHABLE, ICMP_FRAG_NEEDED = 3, 4
ICMPV6_PACKET_TOO_BIG = 2


@dataclass(slots=True)
class PathMtuUpdate:
    """What one ICMP error meant: the SA whose path MTU it lowered, or why it changed nothing."""

    accepted: bool
    detail: str
    sa: SecurityAssociation | None = None
    mtu: int = 0


def _ignored(detail: str, sa: SecurityAssociation | None = None) -> PathMtuUpdate:
    return PathMtuUpdate(False, detail, sa)


def record_icmp_error(sad: SAD, message: bytes, version: int, now: float) -> PathMtuUpdate:
    """Apply one received ICMP message (from its ICMP header on) to the SAD's outbound SAs.

    ``version`` is the IP version it came in (4: ICMP, 6: ICMPv6). Anything that is not a
    "fragmentation needed" / "Packet Too Big" for a packet of ours is ignored, with a reason.
    """
    if len(message) < 8:
        return _ignored("ICMP message truncated")
    kind, code = message[0], message[1]
    if version == 4:
        if (kind, code) != (ICMP_UNREACHABLE, ICMP_FRAG_NEEDED):
            return _ignored(f"ICMP type {kind} code {code} is not fragmentation needed")
        mtu = struct.unpack_from("!H", message, 6)[0]
    elif version == 6:
        if kind != ICMPV6_PACKET_TOO_BIG:
            return _ignored(f"ICMPv6 type {kind} is not Packet Too Big")
        mtu = struct.unpack_from("!I", message, 4)[0]
    else:
        return _ignored(f"IP version {version}")
    quote = message[8:]
    try:
        found = _quoted_sa(sad, quote, version)
    except (ip.MalformedIP, IndexError, struct.error) as exc:
        return _ignored(f"quoted packet unusable: {exc}")
    if isinstance(found, str):
        return _ignored(found)
    sa, quoted_length, df = found
    if version == 4 and not df:
        return _ignored("the quoted packet had DF clear: a router would have fragmented it", sa)
    if mtu < MIN_PMTU[version]:
        return _ignored(f"MTU {mtu} is below the floor of {MIN_PMTU[version]}", sa)
    if quoted_length <= mtu:
        return _ignored(f"the quoted packet ({quoted_length} octets) fits MTU {mtu}", sa)
    current = current_pmtu(sa, now)
    if current and current <= mtu:
        return _ignored(f"path MTU is {current} already", sa)
    sa.path_mtu, sa.path_mtu_at = mtu, now
    return PathMtuUpdate(True, f"path MTU of {sa.name} is now {mtu}", sa, mtu)


def _quoted_sa(sad: SAD, quote: bytes, version: int
               ) -> tuple[SecurityAssociation, int, bool] | str:
    """The outbound SA a quoted packet was sent on, with its length and DF; or why none."""
    if version == 4:
        if len(quote) < 20 or quote[0] >> 4 != 4:
            return "the quote is not an IPv4 header"
        ihl = (quote[0] & 0x0F) * 4
        src, dst, proto = quote[12:16], quote[16:20], quote[9]
        length, df = (quote[2] << 8) | quote[3], bool(quote[6] & 0x40)
        if quote[6] & 0x1F or quote[7]:
            return "the quote is a later fragment"
        start = ihl
    else:
        if len(quote) < 40 or quote[0] >> 4 != 6:
            return "the quote is not an IPv6 header"
        src, dst = quote[8:24], quote[24:40]
        length, df = 40 + ((quote[4] << 8) | quote[5]), True
        proto, start = quote[6], 40
        # Walk what may stand in front of ESP/AH; the quote may end early (it is cut short).
        while proto in ip.IPV6_EXTENSIONS and start + 8 <= len(quote):
            step = 8 if proto == ip.PROTO_FRAGMENT else (quote[start + 1] + 1) * 8
            proto, start = quote[start], start + step
    ports = None
    if proto == ip.PROTO_UDP:
        sport, dport = struct.unpack_from("!HH", quote, start)
        ports, proto, start = (sport, dport), ip.PROTO_ESP, start + 8
    if proto == ip.PROTO_ESP:
        protocol = Protocol.ESP
        spi, seq = struct.unpack_from("!II", quote, start)
    elif proto == ip.PROTO_AH:
        protocol = Protocol.AH
        spi, seq = struct.unpack_from("!II", quote, start + 4)
    else:
        return f"the quoted packet carries protocol {proto}, not ESP or AH"
    sa = sad.lookup_inbound(protocol, spi, dst)
    if sa is None or sa.src.packed != src:
        return f"no outbound SA with SPI 0x{spi:08x} from {ip.as_address(src)}"
    if (sa.encap is None) != (ports is None):
        return f"{sa.name}: UDP encapsulation of the quote does not match the SA"
    if ports is not None and ports != (NAT_T_PORT, sa.encap.dport):
        return f"{sa.name}: quoted UDP ports {ports} are not the SA's"
    sent = sa.seq & 0xFFFFFFFF
    if (sent - seq) & 0xFFFFFFFF >= RECENT_SEQ or (not sa.esn and not 0 < seq <= sent):
        return f"{sa.name}: quoted sequence number {seq} was not sent recently (at {sent})"
    return sa, length, df


def current_pmtu(sa: SecurityAssociation, now: float | None) -> int:
    """The SA's path MTU, 0 if none is known or it has aged out (RFC 4301 §8.2.2)."""
    mtu = sa.path_mtu
    if mtu and now is not None and now - sa.path_mtu_at >= PMTU_AGE:
        sa.path_mtu = mtu = 0
    return mtu


def inner_limit(sas: Sequence[SecurityAssociation], mtu: int, inner_version: int = 4) -> int:
    """The largest packet the SA bundle ``sas`` (innermost first) can carry within ``mtu``.

    For ESP, the payload and its 2-octet trailer are padded to the cipher's block size (at
    least 4, RFC 4303 §2.4); IV and ICV are fixed. For AH, the header and ICV are padded to
    32 bits over IPv4, 64 over IPv6 (RFC 4302 §2.6). In tunnel mode the outer header counts;
    in transport mode the inner header is part of the limit (an IPv4 header without options,
    so options only make the answer smaller than it could be).
    """
    for sa in reversed(sas):
        family = sa.dst.version
        if sa.mode is Mode.TUNNEL:
            mtu -= 20 if family == 4 else 40
        header = 0 if sa.mode is Mode.TUNNEL else 20 if inner_version == 4 else 40
        if sa.protocol is Protocol.AH:
            align = 4 if family == 4 else 8
            mtu -= 12 + sa.icv_size + (-(12 + sa.icv_size) % align)
            continue
        if sa.encap is not None:
            mtu -= 8
        enc = sa.encryption
        align = max(enc.block_size, 4) if enc is not None else 4
        room = mtu - header - 8 - (enc.iv_size if enc else 0) - sa.icv_size
        mtu = room // align * align - 2 + header
    return mtu
