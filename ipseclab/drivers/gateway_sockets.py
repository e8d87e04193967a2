"""The gateway's sockets: how protected packets reach the wire and come back from it.

* Out. A raw ``IPPROTO_RAW`` socket per family sends whole packets the engine built
  (``IP_HDRINCL``: AH's ICV covers the outer header, RFC 4302 §3.3.3.1, so the kernel must not
  build it); ESP in UDP (RFC 3948 §2.1) leaves by the UDP 4500 socket, which wants the ESP
  datagram alone. :meth:`GatewaySockets._plan` decides this once per outbound SA. A raw
  socket never fragments: what the link is too small for leaves as IPv4 fragments
  (:meth:`GatewaySockets._send_fragments`, RFC 4301 §8.1), as the UDP socket's would.
* In. Raw sockets for IP protocols 50 (ESP) and 51 (AH) receive what this kernel does not
  process itself; UDP 4500 receives ESP in UDP, NAT-T keepalives and IKE behind the non-ESP
  marker (RFC 3948 §2.2). ``IP_PKTINFO``/``IPV6_PKTINFO`` tell which of our addresses a
  datagram was sent to (:func:`pktinfo_dst`), which the SA lookup needs.
* Every socket carries ``SO_MARK``, so the policy routing of :mod:`.gateway_routes` keeps the
  daemon's own ESP out of the TUN.

The readers these sockets feed are the packet paths of :class:`ipseclab.drivers.gateway.Gateway`;
this module is a mixin of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import sys
from typing import TYPE_CHECKING

from ipseclab.drivers.netconf import NetConfError
from ipseclab.ipsec import ip
from ipseclab.ipsec.sa import Mode, SecurityAssociation
from ipseclab.ipsec.sa import Protocol as IpsecProtocol
from ipseclab.ipsec.udpencap import NAT_T_PORT, NON_ESP_MARKER

if TYPE_CHECKING:
    from ipseclab.drivers.gateway import Gateway

__all__ = ["IN6_PKTINFO", "IN_PKTINFO", "IPV6_HDRINCL", "IP_PKTINFO", "RECV_BUFFER", "SO_MARK",
           "GatewaySockets", "encap_offset", "pktinfo_dst", "traffic_class"]

log = logging.getLogger("ipseclab.gateway")

SO_MARK = 36
IP_PKTINFO = 8
IPV6_HDRINCL = 36
IN_PKTINFO = struct.Struct("=I4s4s")  # ifindex, spec_dst, addr (the header's destination)
IN6_PKTINFO = struct.Struct("=16sI")  # addr, ifindex
IP_MTU = 14  # getsockopt on a connected socket: the route's MTU (linux/in.h)
IPV6_MTU = 24  # the same for IPv6 (linux/in6.h)
RECV_BUFFER = 4 << 20


class GatewaySockets:
    """Opening the sockets and choosing one per SA; mixed into :class:`Gateway`."""

    def _socket(self: Gateway, family: int, kind: int, proto: int = 0) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        self._sockets.append(sock)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.options.mark)
        if kind != socket.SOCK_RAW or proto != socket.IPPROTO_RAW:
            # Bursts (a TCP window's worth of ESP) must wait here, not be dropped.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        return sock

    def _open_sockets(self: Gateway) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._raw_out[4] = self._socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            for proto in (ip.PROTO_ESP, ip.PROTO_AH):
                sock = self._socket(socket.AF_INET, socket.SOCK_RAW, proto)
                loop.add_reader(sock.fileno(), self._on_raw4, sock)
            udp = self._socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)  # ECN, RFC 6040 §4.2
            udp.bind(("0.0.0.0", NAT_T_PORT))
            self._udp[4] = udp
            loop.add_reader(udp.fileno(), self._on_udp, udp, 4)
        except PermissionError:
            raise NetConfError("raw sockets need root (CAP_NET_RAW)") from None
        except OSError as exc:
            raise NetConfError(f"cannot open the gateway's IPv4 sockets: {exc}") from None
        try:
            # IPPROTO_RAW implies IPV6_HDRINCL; setting it states the intent (Linux >= 4.5).
            raw6 = self._socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            with contextlib.suppress(OSError):
                raw6.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
            self._raw_out[6] = raw6
            for proto in (ip.PROTO_ESP, ip.PROTO_AH):
                sock = self._socket(socket.AF_INET6, socket.SOCK_RAW, proto)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
                loop.add_reader(sock.fileno(), self._on_raw6, sock, proto)
            udp6 = self._socket(socket.AF_INET6, socket.SOCK_DGRAM)
            udp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            udp6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            udp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
            udp6.bind(("::", NAT_T_PORT))
            self._udp[6] = udp6
            loop.add_reader(udp6.fileno(), self._on_udp, udp6, 6)
        except OSError as exc:
            log.info("IPv6 sockets unavailable (%s); IPv6 SAs cannot be used", exc.strerror)

    def _plan(self: Gateway, sa: SecurityAssociation) -> tuple[socket.socket, tuple, int]:
        """How packets of this outbound SA leave: which socket, to where, what to strip."""
        family = sa.dst.version
        if sa.encap is not None and sa.protocol is IpsecProtocol.ESP:
            sock = self._udp.get(family)
            addr: tuple = (str(sa.dst), sa.encap.dport)
            # The engine built IP + UDP + ESP; the socket wants the ESP datagram alone.
            strip = 28 if family == 4 and sa.mode is Mode.TUNNEL else -1
        else:
            sock = self._raw_out.get(family)
            addr = (str(sa.dst), 0)
            strip = 0
        if sock is None:
            raise NetConfError(f"no IPv{family} socket for {sa.name}")
        if sa.encap is not None and sa.encap.sport != NAT_T_PORT:
            self.ratelog("sport", "%s: source port %d is not supported, sending from %d",
                         sa.name, sa.encap.sport, NAT_T_PORT)
        plan = self._send_plan[sa] = (sock, addr, strip)
        return plan

    def _send_fragments(self: Gateway, sock: socket.socket, packet: bytes, addr: tuple) -> None:
        """Send a protected packet the link is too small for as fragments.

        A raw ``IP_HDRINCL`` socket refuses (EMSGSIZE) what exceeds the outgoing link's MTU,
        whatever DF says, where the kernel would fragment a UDP datagram. RFC 4301 §8.1 lets a
        tunnel fragment the outer packet after encapsulation, and strongSwan's kernel-libipsec
        does (its ESP leaves by UDP): without this, a WAN smaller than the TUN MTU plus the
        tunnel overhead swallows every large packet, and TCP stalls. IPv6 fragments carry a
        Fragment header (RFC 8200 §4.5), each fragmented packet a new identification.
        """
        c = self.counters
        dst = addr[0]
        try:
            mtu = self._link_mtus.get(dst) or self._link_mtu(dst)
            fragments = self._fragments(packet, mtu)
            for fragment in fragments:
                sock.sendto(fragment, addr)
        except (OSError, ip.MalformedIP) as exc:
            self._link_mtus.pop(dst, None)  # the link may have shrunk: ask again next time
            c.send_errors += 1
            self.ratelog("send", "sending to %s: %s", dst, getattr(exc, "strerror", exc))
            return
        c.fragmented += 1
        c.protected += 1
        c.wire_sent += len(fragments)

    def _fragments(self: Gateway, packet: bytes, mtu: int) -> list[bytes]:
        """``packet`` in fragments of at most ``mtu`` octets: IPv4 (RFC 791), or IPv6 with a
        Fragment header and a new identification each time (RFC 8200 §4.5)."""
        if packet[0] >> 4 == 4:
            return ip.fragment_ipv4(packet, mtu)
        self._fragment_id = (self._fragment_id + 1) & 0xFFFFFFFF
        return ip.fragment_ipv6(packet, mtu, self._fragment_id)

    def _link_mtu(self: Gateway, dst: str) -> int:
        """The MTU of our (marked) route to ``dst``, as the kernel knows it."""
        v6 = ipaddress.ip_address(dst).version == 6
        with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, SO_MARK, self.options.mark)
            probe.connect((dst, NAT_T_PORT))
            mtu = self._link_mtus[dst] = (probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU) if v6
                                          else probe.getsockopt(socket.IPPROTO_IP, IP_MTU))
        return mtu

    def send_ike(self: Gateway, message: bytes, remote: tuple[str, int]) -> None:
        """Send an IKE message from UDP 4500, behind the non-ESP marker (RFC 3948 §2.2)."""
        family = ipaddress.ip_address(remote[0]).version
        self._udp[family].sendto(NON_ESP_MARKER + message, remote)


def encap_offset(packet: bytes) -> int:
    """Where the ESP datagram starts in an IP + UDP packet the engine built."""
    if packet[0] >> 4 == 4:
        return (packet[0] & 0x0F) * 4 + 8
    return ip.parse_header(packet).header_length + 8


def traffic_class(ancdata: list) -> int:
    """The received packet's TOS / Traffic Class (``IP_RECVTOS``, ``IPV6_RECVTCLASS``), or 0."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == socket.IP_TOS and data:
            return data[0]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_TCLASS and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder) & 0xFF
    return 0


def pktinfo_dst(ancdata: list, family: int) -> bytes | None:
    """The destination address of a received datagram, from IP_PKTINFO / IPV6_PKTINFO."""
    for level, kind, data in ancdata:
        if family == 4 and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            return IN_PKTINFO.unpack_from(data)[2]
        if family == 6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            return IN6_PKTINFO.unpack_from(data)[0]
    return None
