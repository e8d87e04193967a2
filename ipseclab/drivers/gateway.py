"""The gateway daemon: ipseclab's IPsec core on the wire, inside one network namespace.

How packets flow (DESIGN.md, "Data through a gateway"):

* Outbound. The routes derived from the SPD's outbound PROTECT policies send traffic into a
  TUN device: tunnel mode, the remote selectors' subnets; transport mode, the peer itself,
  with our address as ``src``. The daemon reads each packet, the engine applies the SPD
  (RFC 4301 §5.1) and returns the protected packet, which leaves by a raw socket with
  ``IP_HDRINCL`` (ESP, AH: AH's ICV covers the outer header, so the kernel must not build
  it) or by the UDP socket on port 4500 (ESP in UDP, RFC 3948).
* Loop avoidance. Those routes live in their own table, consulted through
  ``ip rule add not fwmark MARK table T``; the daemon's own sockets carry ``SO_MARK`` MARK,
  so its ESP never matches the rule and is routed by the main table, even when the peer's
  own address is routed into the TUN (transport mode, host to host).
* Inbound. Raw sockets for IP protocols 50 and 51 and the UDP 4500 socket receive what the
  kernel does not process itself (this kernel has no ESP/AH); the engine checks and strips
  it (RFC 4301 §5.2) and the daemon writes the inner packet to the TUN, from where the
  kernel forwards it to the LAN or delivers it locally.

Nothing a peer sends can stop the loop: each packet is handled inside a ``try``, counted,
and at most a rate-limited log line is written. Keys never reach a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any, Protocol

from ipseclab.drivers.control import CONTROL_DIR, ControlServer, default_control_path  # noqa: F401
from ipseclab.drivers.netconf import NetConf, NetConfError, local_addresses
from ipseclab.drivers.netconf import ip as ip_command
from ipseclab.drivers.tun import DEFAULT_MTU, TunDevice
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ipsec import ip
from ipseclab.ipsec.engine import IpsecEngine
from ipseclab.ipsec.sa import Mode, SecurityAssociation
from ipseclab.ipsec.sa import Protocol as IpsecProtocol
from ipseclab.ipsec.spd import Policy, PolicyAction
from ipseclab.ipsec.udpencap import NAT_T_PORT, NON_ESP_MARKER, Udp4500Kind, classify
from ipseclab.ipsec.verdict import Status

log = logging.getLogger("ipseclab.gateway")

DEFAULT_MARK = 0x1E5
DEFAULT_TABLE = 485  # 0x1e5
RULE_PRIORITY = 220  # before main (32766); strongSwan uses 220 for its own table too
BATCH = 64  # packets handled per wake-up of one reader before yielding to the others

SO_MARK = 36
IP_PKTINFO = 8
IPV6_HDRINCL = 36
_IN_PKTINFO = struct.Struct("=I4s4s")  # ifindex, spec_dst, addr (the header's destination)
_IN6_PKTINFO = struct.Struct("=16sI")  # addr, ifindex


class IkeHandler(Protocol):
    """Receives IKE messages that arrived on UDP 4500 after the non-ESP marker (RFC 3948 §2.2).

    ``message`` starts at the IKE header; ``remote`` is (address, port); ``local`` our address.
    """

    def __call__(self, message: bytes, remote: tuple[str, int], local: str) -> None: ...


class GatewayExtension(Protocol):
    """What keys the gateway beyond manual SAs (IKE: :mod:`ipseclab.drivers.ike_gateway`).

    ``start`` runs once the sockets and the TUN are up, ``close`` before they go;
    ``acquire`` gets each packet a PROTECT policy has no SA for (RFC 4301 §5.1, step 3);
    ``handle`` answers control commands first and returns NotImplemented for the rest.
    """

    def start(self, gateway: Gateway) -> None: ...

    def close(self) -> None: ...

    def acquire(self, result: Any, packet: bytes) -> None: ...

    def handle(self, request: dict[str, Any]) -> Any: ...


RECV_BUFFER = 4 << 20


@dataclass
class GatewayOptions:
    """Everything ``ipseclab gateway`` takes on its command line."""

    name: str
    manual: Path | None = None
    swanctl: Path | None = None
    control: Path | None = None
    keylog_dir: Path | None = None
    tun: str = "ipsec0"
    mtu: int = DEFAULT_MTU
    mark: int = DEFAULT_MARK
    table: int = DEFAULT_TABLE
    pidfile: Path | None = None
    ike_retransmit: tuple[float, int] = (1.0, 5)  # first timeout (doubling), retransmissions


@dataclass
class DriverCounters:
    """What the daemon itself counts, beside the engine's counters."""

    tun_read: int = 0
    tun_written: int = 0
    wire_received: int = 0
    wire_sent: int = 0
    protected: int = 0
    bypassed: int = 0
    discarded: int = 0
    acquire: int = 0
    protect_errors: int = 0
    send_errors: int = 0
    tun_write_errors: int = 0
    keepalives: int = 0
    ike_received: int = 0
    ike_dropped: int = 0
    udp_malformed: int = 0
    inbound_rejected: int = 0
    internal_errors: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class RateLimitedLog:
    """At most one line per ``interval`` seconds per key, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self.logger, self.interval = logger, interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: object, level: int = logging.WARNING,
                 exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        more = self._suppressed.pop(key, 0)
        if more:
            message += f" ({more} similar suppressed)"
        self.logger.log(level, message, *args, exc_info=exc_info)


class _AddressCache(dict):
    """Packed address bytes -> ipaddress object, so a packet does not build one each time."""

    def get_address(self, packed: bytes) -> ip.IPAddress:
        addr = self.get(packed)
        if addr is None:
            if len(self) > 4096:
                self.clear()
            addr = self[packed] = ipaddress.ip_address(packed)
        return addr


class Gateway:
    """One gateway: an :class:`IpsecEngine`, a TUN device, its sockets, routes and control."""

    def __init__(self, engine: IpsecEngine, options: GatewayOptions,
                 ike_handler: IkeHandler | None = None,
                 extension: GatewayExtension | None = None) -> None:
        self.engine = engine
        self.options = options
        self.ike_handler = ike_handler
        self.extension = extension
        self.counters = DriverCounters()
        self.netconf = NetConf()
        self.tun: TunDevice | None = None
        self.ratelog = RateLimitedLog(log)
        self._sockets: list[socket.socket] = []
        self._raw_out: dict[int, socket.socket] = {}
        self._udp: dict[int, socket.socket] = {}
        # Per outbound SA: (socket, address, bytes to strip); and what it sent.
        self._send_plan: dict[SecurityAssociation, tuple[socket.socket, tuple, int]] = {}
        self._lifetime_task: asyncio.Task | None = None
        self._routes: dict[tuple[int, str], list[str]] = {}
        self._addresses = _AddressCache()
        self._stop = asyncio.Event()
        self._control: ControlServer | None = None
        self._keylog = None
        self._keylogged: set[tuple[int, str]] = set()
        self._pidfile_written = False

    # -- life cycle --------------------------------------------------------------------

    async def run(self, ready: bool = True) -> None:
        """Set everything up, serve until stopped (signal or ``ctl stop``), undo everything."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start()
            if ready:
                print(f"ipseclab gateway {self.options.name} ready", flush=True)
            await self._stop.wait()
            log.info("stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        o = self.options
        if o.pidfile is not None:
            o.pidfile.parent.mkdir(parents=True, exist_ok=True)
            o.pidfile.write_text(f"{os.getpid()}\n")
            self._pidfile_written = True
        self._control = ControlServer(o.control or default_control_path(o.name), self.handle)
        await self._control.start()
        self.tun = TunDevice(o.tun, self.netconf, mtu=o.mtu)
        self._configure_kernel()
        self._open_sockets()
        self.sync_routes()
        self.engine.start_lifetimes(monotonic())
        self._lifetime_task = asyncio.get_running_loop().create_task(self._lifetime_loop())
        if o.keylog_dir is not None:
            from ipseclab.keylog import EspSaFile, keylog_dir_layout

            self._keylog = EspSaFile(keylog_dir_layout(o.keylog_dir)[0])
            self._keylog_add(list(self.engine.sad))
        loop = asyncio.get_running_loop()
        loop.add_reader(self.tun.fd, self._on_tun)
        if self.extension is not None:
            self.extension.start(self)
        log.info("up: TUN %s (MTU %d), %d SAs, %d policies, mark 0x%x, table %d",
                 self.tun.name, o.mtu, len(self.engine.sad), len(self.engine.spd), o.mark,
                 o.table)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self.extension is not None:
            try:
                self.extension.close()
            except Exception:
                log.warning("closing %s failed", type(self.extension).__name__, exc_info=True)
        if self._lifetime_task is not None:
            self._lifetime_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._lifetime_task
        if self.tun is not None and self.tun.fd >= 0:
            loop.remove_reader(self.tun.fd)
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        if self._control is not None:
            await self._control.close()
        self._routes.clear()
        self.netconf.undo()
        if self.tun is not None:
            self.tun.close()
        if self._pidfile_written and self.options.pidfile is not None:
            with contextlib.suppress(OSError):
                self.options.pidfile.unlink()

    # -- kernel configuration ----------------------------------------------------------

    def _configure_kernel(self) -> None:
        o, nc = self.options, self.netconf
        tun = self.tun.name
        # Decrypted packets come in on the TUN; their source is routed elsewhere for marked
        # traffic, so reverse-path filtering must not drop them.
        nc.sysctl("net.ipv4.conf.all.rp_filter", "0")
        nc.sysctl(f"net.ipv4.conf.{tun}.rp_filter", "0")
        nc.sysctl("net.ipv4.ip_forward", "1")
        with contextlib.suppress(NetConfError):
            nc.sysctl("net.ipv6.conf.all.forwarding", "1")
        for family in ("-4", "-6"):
            rule = ["rule", "add", "not", "fwmark", f"0x{o.mark:x}", "table", str(o.table),
                    "priority", str(RULE_PRIORITY)]
            undo = ["rule", "del", "not", "fwmark", f"0x{o.mark:x}", "table", str(o.table),
                    "priority", str(RULE_PRIORITY)]
            # A rule left by a daemon that was killed: remove it before adding ours.
            for _ in range(8):
                if ip_command(family, *undo, check=False).returncode != 0:
                    break
            try:
                nc.run([family, *rule], [family, *undo])
            except NetConfError:
                if family == "-4":
                    raise
                log.info("no IPv6 policy routing in this namespace; IPv6 is not protected")

    def desired_routes(self) -> dict[tuple[int, str], list[str]]:
        """The TUN routes the SPD's outbound PROTECT policies need, keyed by (family, prefix).

        Tunnel mode: the remote selector's prefixes. Transport mode: the same (usually the
        peer's address), with ``src`` our address so that the kernel picks the address the
        SA was made for.
        """
        mine = local_addresses()
        routes: dict[tuple[int, str], list[str]] = {}
        for policy in self.engine.spd.policies("out"):
            if policy.action is not PolicyAction.PROTECT:
                continue
            src = self._route_source(policy, mine)
            for net in policy.selector.remote.networks():
                key = (net.version, str(net))
                if key in routes:
                    continue
                args = [f"-{net.version}", "route", "replace", str(net), "dev", self.tun.name,
                        "table", str(self.options.table)]
                if src is not None:
                    args += ["src", src]
                routes[key] = args
        return routes

    @staticmethod
    def _route_source(policy: Policy, mine: set[str]) -> str | None:
        candidates = [str(t.src) for t in policy.templates if t.src is not None]
        local = policy.selector.local
        if local.start == local.end:
            candidates.insert(0, str(ipaddress.ip_address(local.start) if local.version == 4
                                     else ipaddress.IPv6Address(local.start)))
        for addr in candidates:
            if addr in mine:
                return addr
        # Tunnel mode: an address of ours inside the local subnet, for the gateway's own traffic.
        for addr in mine:
            a = ipaddress.ip_address(addr)
            if a.version == local.version and local.start <= int(a) <= local.end:
                return addr
        return None

    def sync_routes(self) -> None:
        """Make the TUN routes match the SPD: add what is new, remove what is gone."""
        want = self.desired_routes()
        for key in list(self._routes):
            if key not in want or want[key] != self._routes[key]:
                self.netconf.forget(self._route_undo(key))
                del self._routes[key]
        for key, args in want.items():
            if key in self._routes:
                continue
            try:
                self.netconf.run(args, self._route_undo(key))
            except NetConfError as exc:
                log.warning("route %s: %s", key[1], exc)
                continue
            self._routes[key] = args
            log.info("route %s via %s (table %d)", key[1], self.tun.name, self.options.table)

    def _route_undo(self, key: tuple[int, str]) -> list[str]:
        return [f"-{key[0]}", "route", "del", key[1], "dev", self.tun.name, "table",
                str(self.options.table)]

    # -- sockets -----------------------------------------------------------------------

    def _socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        self._sockets.append(sock)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.options.mark)
        if kind != socket.SOCK_RAW or proto != socket.IPPROTO_RAW:
            # Bursts (a TCP window's worth of ESP) must wait here, not be dropped.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        return sock

    def _open_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._raw_out[4] = self._socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            for proto in (ip.PROTO_ESP, ip.PROTO_AH):
                sock = self._socket(socket.AF_INET, socket.SOCK_RAW, proto)
                loop.add_reader(sock.fileno(), self._on_raw4, sock)
            udp = self._socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
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
                loop.add_reader(sock.fileno(), self._on_raw6, sock, proto)
            udp6 = self._socket(socket.AF_INET6, socket.SOCK_DGRAM)
            udp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            udp6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            udp6.bind(("::", NAT_T_PORT))
            self._udp[6] = udp6
            loop.add_reader(udp6.fileno(), self._on_udp, udp6, 6)
        except OSError as exc:
            log.info("IPv6 sockets unavailable (%s); IPv6 SAs cannot be used", exc.strerror)

    # -- outbound: TUN -> engine -> wire -----------------------------------------------

    def _on_tun(self) -> None:
        fd = self.tun.fd
        read = os.read
        outbound = self._outbound
        for _ in range(BATCH):
            try:
                packet = read(fd, 65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self.ratelog("tun-read", "reading %s: %s", self.tun.name, exc.strerror)
                return
            try:
                outbound(packet)
            except Exception:
                self.counters.internal_errors += 1
                self.ratelog("internal-out", "outbound packet failed", exc_info=True)

    def _outbound(self, packet: bytes) -> None:
        c = self.counters
        c.tun_read += 1
        result = self.engine.outbound(packet, monotonic())
        if self.engine.events:
            self._lifetime_events()
        action = result.action
        if action == "protect":
            sa = result.sa
            plan = self._send_plan.get(sa)
            if plan is None:
                plan = self._plan(sa)
            sock, addr, strip = plan
            data = result.packet
            if strip:
                data = data[strip if strip > 0 else _encap_offset(data):]
            try:
                sock.sendto(data, addr)
            except OSError as exc:
                c.send_errors += 1
                self.ratelog("send", "sending to %s: %s", addr[0], exc.strerror)
                return
            c.protected += 1
            c.wire_sent += 1
        elif action == "bypass":
            self._send_bypass(packet)
        elif action == "discard":
            c.discarded += 1
        elif action == "acquire":
            c.acquire += 1
            if self.extension is not None:
                self.extension.acquire(result, packet)
            else:
                self.ratelog("acquire", "no SA yet: %s (packet dropped)", result.detail,
                             level=logging.INFO)
        else:
            c.protect_errors += 1
            self.ratelog("protect", "cannot protect: %s", result.detail)

    def _plan(self, sa: SecurityAssociation) -> tuple[socket.socket, tuple, int]:
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

    def _send_bypass(self, packet: bytes) -> None:
        """A packet the SPD lets through in the clear: send it past the TUN routes."""
        c = self.counters
        version = packet[0] >> 4
        sock = self._raw_out.get(version)
        try:
            if sock is None or len(packet) < (20 if version == 4 else 40):
                raise OSError(0, "not an IP packet this gateway can send")
            dst = packet[16:20] if version == 4 else packet[24:40]
            chatter = (dst[0] >= 224 if version == 4
                       else dst[0] == 0xFF or packet[8:10] == b"\xfe\x80")
            if chatter:
                # Multicast and link-local chatter of the TUN itself (MLD, say): it has
                # nowhere to go past the tunnel.
                c.discarded += 1
                return
            sock.sendto(packet, (str(self._addresses.get_address(dst)), 0))
        except OSError as exc:
            c.send_errors += 1
            self.ratelog("bypass", "bypass send failed: %s", exc.strerror)
            return
        c.bypassed += 1

    # -- inbound: wire -> engine -> TUN ------------------------------------------------

    def _on_raw4(self, sock: socket.socket) -> None:
        recv = sock.recv
        inbound = self._inbound
        for _ in range(BATCH):
            try:
                packet = recv(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self.ratelog("recv4", "receiving: %s", exc.strerror)
                return
            inbound(packet)

    def _on_raw6(self, sock: socket.socket, proto: int) -> None:
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65535, 64)
            except BlockingIOError:
                return
            except OSError as exc:
                self.ratelog("recv6", "receiving: %s", exc.strerror)
                return
            dst = _pktinfo_dst(ancdata, 6)
            if dst is None:
                self.counters.internal_errors += 1
                continue
            cache = self._addresses
            try:
                src_addr = cache.get_address(socket.inet_pton(socket.AF_INET6,
                                                              addr[0].split("%")[0]))
                # The kernel strips the IPv6 header; the engine wants the whole packet back.
                header = ip.ipv6_header(src_addr, cache.get_address(dst), proto, len(data))
            except (OSError, ValueError):
                self.counters.internal_errors += 1
                continue
            self._inbound(header + data)

    def _inbound(self, packet: bytes) -> None:
        c = self.counters
        c.wire_received += 1
        try:
            result = self.engine.inbound(packet, monotonic())
        except Exception:
            c.internal_errors += 1
            self.ratelog("internal-in", "inbound packet failed", exc_info=True)
            return
        self._deliver(result)

    def _deliver(self, result) -> None:
        c = self.counters
        status = result.status
        if status is Status.OK:
            try:
                os.write(self.tun.fd, result.inner)
            except OSError as exc:
                c.tun_write_errors += 1
                self.ratelog("tun-write", "writing to %s: %s", self.tun.name, exc.strerror)
                return
            c.tun_written += 1
            return
        c.by_status[status.value] = c.by_status.get(status.value, 0) + 1
        if status is Status.KEEPALIVE:
            c.keepalives += 1
        elif status is not Status.DUMMY:
            c.inbound_rejected += 1
            spi = f"0x{result.spi:08x}" if result.spi is not None else "-"
            self.ratelog(f"in-{status.value}", "inbound packet dropped: %s (SPI %s) %s",
                         status.value, spi, result.detail)

    def _on_udp(self, sock: socket.socket, family: int) -> None:
        c = self.counters
        cache = self._addresses
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65535, 64)
            except BlockingIOError:
                return
            except OSError as exc:
                self.ratelog("recv-udp", "receiving on UDP 4500: %s", exc.strerror)
                return
            c.wire_received += 1
            try:
                kind = classify(data)
                if kind is Udp4500Kind.KEEPALIVE:
                    c.keepalives += 1
                    continue
                dst = _pktinfo_dst(ancdata, family)
                if kind is Udp4500Kind.IKE:
                    self._ike(data[4:], addr, dst, family)
                    continue
                if kind is not Udp4500Kind.ESP or dst is None:
                    c.udp_malformed += 1
                    self.ratelog("udp-malformed", "UDP 4500 datagram from %s is neither ESP,"
                                 " IKE nor a keepalive (%d bytes)", addr[0], len(data))
                    continue
                src = cache.get_address(socket.inet_pton(
                    socket.AF_INET if family == 4 else socket.AF_INET6, addr[0].split("%")[0]))
                result = self.engine.inbound_datagram(data, src, cache.get_address(dst),
                                                      monotonic())
            except Exception:
                c.internal_errors += 1
                self.ratelog("internal-udp", "UDP 4500 datagram failed", exc_info=True)
                continue
            self._deliver(result)

    def _ike(self, message: bytes, addr: tuple, dst: bytes | None, family: int) -> None:
        c = self.counters
        c.ike_received += 1
        if self.ike_handler is None:
            c.ike_dropped += 1
            self.ratelog("ike", "IKE message from %s on UDP 4500 ignored: no IKE here yet",
                         addr[0], level=logging.INFO)
            return
        local = str(self._addresses.get_address(dst)) if dst else ""
        self.ike_handler(message, (addr[0], addr[1]), local)

    def send_ike(self, message: bytes, remote: tuple[str, int]) -> None:
        """Send an IKE message from UDP 4500, behind the non-ESP marker (RFC 3948 §2.2)."""
        family = ipaddress.ip_address(remote[0]).version
        self._udp[family].sendto(NON_ESP_MARKER + message, remote)

    # -- SAs and policies at run time --------------------------------------------------

    def load(self, states: list[SecurityAssociation], policies: list[Policy]) -> None:
        """Add SAs and policies; all policies or none (the SPD refuses duplicates)."""
        added: list[Policy] = []
        try:
            for policy in policies:
                added.append(self.engine.spd.add(policy))
        except ConfigError:
            for policy in added:
                self.engine.spd.remove(policy)
            raise
        for sa in states:
            self.engine.sad.add(sa)
        self.engine.start_lifetimes(monotonic())
        if self.tun is not None:
            self.sync_routes()
        self._keylog_add(states)

    def _lifetime_events(self) -> None:
        """Act on SA lifetimes: log soft limits (a rekey is due), forget hard-expired SAs."""
        events, self.engine.events = self.engine.events, []
        for ev in events:
            if ev.hard:
                self._send_plan.pop(ev.sa, None)
                log.warning("%s: hard lifetime reached (%s); SA removed", ev.sa.name, ev.event)
            else:
                log.info("%s: soft lifetime reached (%s); a rekey is due", ev.sa.name, ev.event)

    async def _lifetime_loop(self) -> None:
        """Time limits expire without traffic too: poll the engine at its next deadline."""
        while True:
            deadline = self.engine.next_deadline()
            delay = 1.0 if deadline is None else min(1.0, max(0.0, deadline - monotonic()))
            await asyncio.sleep(delay)
            self.engine.poll(monotonic())
            if self.engine.events:
                self._lifetime_events()

    def flush(self) -> None:
        """Remove every SA and policy (``ip xfrm state flush; ip xfrm policy flush``)."""
        sas = list(self.engine.sad)
        self.engine.sad.flush()
        self.engine.spd.flush()
        self._send_plan.clear()
        if self.tun is not None:
            self.sync_routes()
        if self._keylog is not None:
            for sa in sas:
                key = (sa.spi, str(sa.dst))
                if key in self._keylogged:
                    self._keylog.remove(sa.spi, str(sa.dst))
                    self._keylogged.discard(key)

    def _keylog_add(self, sas: list[SecurityAssociation]) -> None:
        if self._keylog is None:
            return
        from ipseclab.capture.keys import esp_sa_entry

        for sa in sas:
            if sa.protocol is not IpsecProtocol.ESP:
                continue
            try:
                self._keylog.add(esp_sa_entry(sa))
            except (IpsecLabError, OSError) as exc:
                log.warning("key log: %s: %s", sa.name, exc)
                continue
            self._keylogged.add((sa.spi, str(sa.dst)))

    # -- control commands (served by drivers/control.py) ------------------------------

    def handle(self, request: dict[str, Any]) -> Any:
        """One control command (JSON in, JSON-able out); see ``ipseclab ctl --help``."""
        command = request.get("command")
        if self.extension is not None:
            answer = self.extension.handle(request)
            if answer is not NotImplemented:
                return answer
        if command == "list-sas":
            return self.list_sas()
        if command == "list-policies":
            return [policy_json(p) for p in self.engine.spd]
        if command == "stats":
            return self.stats()
        if command == "load":
            from ipseclab.config import xfrm

            config = xfrm.load(request["file"])
            if config.insecure:
                log.warning("%s is marked insecure: weak SAs are allowed", config.source)
            self.load(config.states, config.policies)
            return {"states": len(config.states), "policies": len(config.policies)}
        if command == "flush":
            n = len(self.engine.sad), len(self.engine.spd)
            self.flush()
            return {"states": n[0], "policies": n[1]}
        if command == "stop":
            asyncio.get_running_loop().call_soon(self._stop.set)
            return {"stopping": self.options.name}
        raise ConfigError(f"unknown command '{command}'")

    def list_sas(self) -> list[dict[str, Any]]:
        mine = local_addresses()
        return [sa_json(sa, "in" if str(sa.dst) in mine else "out", None)
                for sa in self.engine.sad]

    def stats(self) -> dict[str, Any]:
        return {"name": self.options.name, "engine": asdict(self.engine.counters),
                "driver": asdict(self.counters), "sas": len(self.engine.sad),
                "policies": len(self.engine.spd)}


def _encap_offset(packet: bytes) -> int:
    """Where the ESP datagram starts in an IP + UDP packet the engine built."""
    if packet[0] >> 4 == 4:
        return (packet[0] & 0x0F) * 4 + 8
    return ip.parse_header(packet).header_length + 8


def _pktinfo_dst(ancdata: list, family: int) -> bytes | None:
    """The destination address of a received datagram, from IP_PKTINFO / IPV6_PKTINFO."""
    for level, kind, data in ancdata:
        if family == 4 and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            return _IN_PKTINFO.unpack_from(data)[2]
        if family == 6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            return _IN6_PKTINFO.unpack_from(data)[0]
    return None


def sa_json(sa: SecurityAssociation, direction: str,
            tx: list[int] | None = None) -> dict[str, Any]:
    """What ``ctl list-sas --json`` shows of one SA (no keys)."""
    c = sa.counters
    packets, nbytes = (tx[0], tx[1]) if tx is not None else (c.packets, c.bytes)
    return {
        "spi": f"0x{sa.spi:08x}", "direction": direction, "src": str(sa.src),
        "dst": str(sa.dst), "protocol": str(sa.protocol), "mode": str(sa.mode),
        "algorithms": sa.algorithms,
        "encap": (f"espinudp {sa.encap.sport} {sa.encap.dport}" if sa.encap else None),
        "reqid": sa.reqid, "packets": packets, "bytes": nbytes, "replay": c.replay,
        "too_old": c.too_old, "auth_failed": c.auth_failed, "bad_padding": c.bad_padding,
        "malformed": c.malformed, "policy_mismatch": c.policy_mismatch, "seq": sa.seq,
        "replay_window": sa.replay_window, "esn": sa.esn,
    }


def policy_json(policy: Policy) -> dict[str, Any]:
    return {"index": policy.index, "direction": str(policy.direction),
            "selector": str(policy.selector), "action": policy.action.value,
            "priority": policy.priority, "packets": policy.packets,
            "templates": [str(t) for t in policy.templates]}


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def run_gateway(options: GatewayOptions) -> int:
    """Load the manual SAs and/or the swanctl.conf, run the daemon until it is stopped;
    0 on a clean stop."""
    engine = IpsecEngine()
    if options.manual is not None:
        from ipseclab.config import xfrm

        config = xfrm.load(options.manual)
        if config.insecure:
            log.warning("%s is marked '# ipseclab: insecure': weak SAs are allowed",
                        config.source)
        engine.load(config.states, config.policies)
    extension = None
    if options.swanctl is not None:
        from ipseclab.drivers.ike_gateway import IkeGateway

        base, tries = options.ike_retransmit
        extension = IkeGateway.from_swanctl(options.swanctl, retransmit_base=base,
                                            retransmit_tries=tries)
    gateway = Gateway(engine, options, extension=extension)
    asyncio.run(gateway.run())
    return 0
