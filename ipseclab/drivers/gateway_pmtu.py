"""Path MTU discovery for the gateway's outer packets (RFC 4301 §8.2): the socket half.

The engine decides (:mod:`ipseclab.ipsec.pmtu`); this mixin of
:class:`ipseclab.drivers.gateway.Gateway` does the I/O:

* In. A raw ICMP socket and a raw ICMPv6 socket, filtered by the kernel to "destination
  unreachable" and "Packet Too Big", hand each message to
  :meth:`~ipseclab.ipsec.engine.IpsecEngine.icmp_error`, which shrinks the path MTU of the
  outbound SA the quoted packet was sent on. Why not ``IP_RECVERR`` on the sending socket:
  ESP and AH leave by an ``IPPROTO_RAW`` socket, and the kernel hands an ICMP error only to
  raw sockets of the quoted protocol (50, 51), not to it; the UDP 4500 socket is not
  connected. A raw ICMP socket sees them all, for ESP, AH and ESP in UDP alike. (The kernel
  also notes the PMTU in its route cache, which ``IP_MTU`` on a connected socket reads, and
  fragments UDP 4500 datagrams to it by itself; but an ``IP_HDRINCL`` socket checks only the
  device MTU, so raw ESP with DF would keep running into the small link.)
* Out. ``too_big``: the ICMP error goes back to the inner packet's sender (RFC 4301 §8.2.1),
  from our address on the way to it, at most :data:`TOO_BIG_PER_SECOND` a second (RFC 1812
  §4.3.2.8). ``protect`` with an ``mtu``: the outer packet, DF clear, leaves as IPv4
  fragments of the path MTU (RFC 4301 §8.1), as a router on the path would cut it anyway.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from time import monotonic
from typing import TYPE_CHECKING

from ipseclab.drivers.gateway_sockets import SO_MARK
from ipseclab.ipsec import ip
from ipseclab.ipsec.udpencap import NAT_T_PORT

if TYPE_CHECKING:
    from ipseclab.drivers.gateway import Gateway

__all__ = ["ICMP6_FILTER", "ICMP_FILTER", "TOO_BIG_PER_SECOND", "GatewayPmtu"]

log = logging.getLogger("ipseclab.gateway")

SOL_RAW = 255
ICMP_FILTER = 1  # SOL_RAW: a bit mask of the ICMP types the socket does NOT want (linux/icmp.h)
ICMP6_FILTER = 1  # IPPROTO_ICMPV6: eight 32-bit words, a set bit blocks that type (RFC 3542)
TOO_BIG_PER_SECOND = 100


class GatewayPmtu:
    """The ICMP sockets and the sending side of PMTU discovery; mixed into :class:`Gateway`."""

    def _open_icmp_sockets(self: Gateway) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock = self._socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", ~(1 << 3) & 0xFFFFFFFF))
            loop.add_reader(sock.fileno(), self._on_icmp, sock, 4)
            sock6 = self._socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            words = [0xFFFFFFFF] * 8
            words[0] &= ~(1 << 2)  # let Packet Too Big (type 2) through
            sock6.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
            loop.add_reader(sock6.fileno(), self._on_icmp, sock6, 6)
        except OSError as exc:
            log.info("no ICMP sockets (%s): path MTU discovery is off", exc.strerror)

    def _on_icmp(self: Gateway, sock: socket.socket, version: int) -> None:
        engine = self.engine
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self.ratelog("recv-icmp", "receiving ICMP: %s", exc.strerror)
                return
            try:
                # An IPv4 raw socket gives the IP header too; an IPv6 one gives ICMPv6 alone.
                message = data[(data[0] & 0x0F) * 4:] if version == 4 else data
                update = engine.icmp_error(message, version, monotonic())
            except Exception:
                self.counters.internal_errors += 1
                self.ratelog("internal-icmp", "ICMP message failed", exc_info=True)
                continue
            if update.accepted:
                log.info("%s (ICMP from %s)", update.detail, addr[0])
            elif update.sa is not None:
                # One of our SAs, but not believed: worth a line, now and then.
                self.ratelog("pmtu-ignored", "ICMP from %s ignored: %s", addr[0],
                             update.detail, level=logging.INFO)

    def _send_too_big(self: Gateway, packet: bytes, mtu: int) -> None:
        """Tell the sender of ``packet`` that only ``mtu`` octets fit (RFC 4301 §8.2.1)."""
        c = self.counters
        now = monotonic()
        second, sent = self._too_big_window
        if now - second >= 1.0:
            second, sent = now, 0
        if sent >= TOO_BIG_PER_SECOND:
            c.discarded += 1
            return
        self._too_big_window = (second, sent + 1)
        version = packet[0] >> 4
        try:
            dst = self._addresses.get_address(packet[12:16] if version == 4 else packet[8:24])
            error = ip.icmp_too_big(self._source_towards(dst), packet, mtu)
            self._raw_out[version].sendto(error, (str(dst), 0))
        except (OSError, KeyError, ValueError) as exc:
            c.send_errors += 1
            self.ratelog("too-big", "cannot send the too-big error: %s",
                         getattr(exc, "strerror", None) or exc)
            return
        c.too_big_sent += 1
        c.discarded += 1

    def _source_towards(self: Gateway, dst: ip.IPAddress) -> ip.IPAddress:
        """Our address on the (marked, so not the TUN's) route to ``dst``, as the kernel
        would choose it."""
        source = self._pmtu_sources.get(dst)
        if source is None:
            family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, SO_MARK, self.options.mark)
                probe.connect((str(dst), NAT_T_PORT))
                source = ip.as_address(probe.getsockname()[0])
            if len(self._pmtu_sources) > 1024:
                self._pmtu_sources.clear()
            self._pmtu_sources[dst] = source
        return source

    def _send_to_path_mtu(self: Gateway, sock: socket.socket, packet: bytes, addr: tuple,
                          mtu: int) -> None:
        """Send a protected packet (DF clear) bigger than its SA's path MTU in fragments of
        that size (IPv4, or IPv6 with a Fragment header)."""
        c = self.counters
        try:
            fragments = self._fragments(packet, mtu)
            for fragment in fragments:
                sock.sendto(fragment, addr)
        except (OSError, ip.MalformedIP) as exc:
            c.send_errors += 1
            self.ratelog("send", "sending to %s: %s", addr[0], getattr(exc, "strerror", exc))
            return
        if len(fragments) > 1:
            c.fragmented += 1
        c.protected += 1
        c.wire_sent += len(fragments)
