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

This module holds the life cycle and the two packet paths; :class:`Gateway` mixes in the
rest, one part of the daemon per module:

    :mod:`.gateway_routes`    sysctls, policy routing, the TUN routes the SPD needs
    :mod:`.gateway_sockets`   raw and UDP 4500 sockets, SO_MARK, which socket an SA uses
    :mod:`.gateway_pmtu`      ICMP sockets: path MTU per SA, too-big errors to the sender
    :mod:`.gateway_sad`       ``load``/``flush``, SA lifetimes, the ``esp_sa`` key log
    :mod:`.gateway_commands`  control commands and their JSON views (:func:`sa_json`)
    :mod:`.gateway_parts`     options, counters, the rate-limited log, the IKE interfaces
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from time import monotonic

from ipseclab.drivers.control import CONTROL_DIR, ControlServer, default_control_path
from ipseclab.drivers.gateway_commands import GatewayCommands, policy_json, sa_json
from ipseclab.drivers.gateway_parts import (
    AddressCache,
    DriverCounters,
    GatewayExtension,
    GatewayOptions,
    IkeHandler,
    RateLimitedLog,
)
from ipseclab.drivers.gateway_pmtu import GatewayPmtu
from ipseclab.drivers.gateway_routes import DEFAULT_MARK, DEFAULT_TABLE, GatewayRoutes
from ipseclab.drivers.gateway_sad import GatewaySad
from ipseclab.drivers.gateway_sockets import GatewaySockets
from ipseclab.drivers.gateway_sockets import encap_offset as _encap_offset
from ipseclab.drivers.gateway_sockets import pktinfo_dst as _pktinfo_dst
from ipseclab.drivers.gateway_sockets import traffic_class as _traffic_class
from ipseclab.drivers.netconf import NetConf
from ipseclab.drivers.tun import TunDevice
from ipseclab.ipsec import fastpath, ip
from ipseclab.ipsec.engine import IpsecEngine
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.udpencap import Udp4500Kind, classify
from ipseclab.ipsec.verdict import Status

# Names other modules, tests and notebooks import from here.
__all__ = ["CONTROL_DIR", "DEFAULT_MARK", "DEFAULT_TABLE", "ControlServer", "DriverCounters",
           "Gateway", "GatewayExtension", "GatewayOptions", "IkeHandler", "RateLimitedLog",
           "default_control_path", "policy_json", "run_gateway", "sa_json", "setup_logging"]

log = logging.getLogger("ipseclab.gateway")

BATCH = 64  # packets handled per wake-up of one reader before yielding to the others


class Gateway(GatewayRoutes, GatewaySockets, GatewayPmtu, GatewaySad, GatewayCommands):
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
        self._addresses = AddressCache()
        self._link_mtus: dict[str, int] = {}  # per peer address, learnt from EMSGSIZE
        self._fragment_id = int.from_bytes(os.urandom(4), "big")  # IPv6 fragments (RFC 8200)
        self._pmtu_sources: dict[ip.IPAddress, ip.IPAddress] = {}  # too-big errors' sources
        self._too_big_window = (0.0, 0)  # (second started, errors sent in it)
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
        control = o.control or default_control_path(o.name)
        self._control = ControlServer(control, self.handle)
        await self._control.start()
        # Next to the control socket: the sysctls' old values, for a run after a SIGKILL.
        restored = self.netconf.keep_journal(control.with_name(control.name + ".sysctl"))
        if restored:
            log.info("restored %s, left by an earlier run that did not stop",
                     ", ".join(restored))
        self.tun = TunDevice(o.tun, self.netconf, mtu=o.mtu)
        self._configure_kernel()
        self._open_sockets()
        self._open_icmp_sockets()
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
        log.info("up: TUN %s (MTU %d), %d SAs, %d policies, mark 0x%x, table %d; ESP path %s",
                 self.tun.name, o.mtu, len(self.engine.sad), len(self.engine.spd), o.mark,
                 o.table, fastpath.status())

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
            elif result.mtu:
                # Bigger than the SA's path MTU, DF clear (RFC 4301 §8.2.1): cut it here.
                self._send_to_path_mtu(sock, data, addr, result.mtu)
                return
            try:
                sock.sendto(data, addr)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE and not strip:
                    # A raw socket never fragments: we must (RFC 4301 §8.1).
                    self._send_fragments(sock, data, addr)
                    return
                c.send_errors += 1
                self.ratelog("send", "sending to %s: %s", addr[0], exc.strerror)
                return
            c.protected += 1
            c.wire_sent += 1
        elif action == "bypass":
            self._send_bypass(packet)
        elif action == "discard":
            c.discarded += 1
        elif action == "too_big":
            self._send_too_big(packet, result.mtu)
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
                # The kernel's note of an ICMP error about a packet we sent (EMSGSIZE for
                # "fragmentation needed"): read once, and gateway_pmtu has the ICMP itself.
                self.ratelog("recv4", "receiving: %s", exc.strerror, level=logging.INFO)
                continue
            inbound(packet)

    def _on_raw6(self, sock: socket.socket, proto: int) -> None:
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65535, 128)
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
                header = ip.ipv6_header(src_addr, cache.get_address(dst), proto, len(data),
                                        traffic_class=_traffic_class(ancdata))
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
                data, ancdata, _flags, addr = sock.recvmsg(65535, 128)
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
                                                      monotonic(),
                                                      outer_tc=_traffic_class(ancdata))
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
                                            retransmit_tries=tries,
                                            make_before_break=options.make_before_break,
                                            mtu=options.mtu)
    gateway = Gateway(engine, options, extension=extension)
    asyncio.run(gateway.run())
    return 0
