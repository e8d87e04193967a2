"""IKEv2 inside the gateway daemon: the bridge between :class:`IkeEngine` and :class:`IpsecEngine`.

``ipseclab gateway --swanctl FILE`` runs one :class:`IkeGateway` as the gateway's extension
(:class:`ipseclab.drivers.gateway.GatewayExtension`). It owns

* the IKE sockets: UDP 500 here, UDP 4500 shared with ESP in UDP (the gateway hands us what
  follows the non-ESP marker, RFC 3948 §2.2); each datagram goes to the engine with
  ``time.monotonic()`` as ``now``, and the engine's one timer is kept on the asyncio loop;
* the engine's events, applied to the SAD and SPD make-before-break (RFC 7296 §2.8):
  ``inbound`` goes into the SAD at once, ``outbound`` when the event says it is ready (or on
  :class:`ChildSaOutboundReady`); SAs leave the SAD by (SPI, destination), and a deleted
  outbound SA that was never added (the loser of a rekey collision) is ignored;
* the SPD entries of each child SA (out/in/fwd PROTECT per negotiated selector pair, tunnel
  endpoints from the SA), removed again when its last SA pair goes;
* ``start_action`` (``start``: initiate when the gateway starts; ``trap``: an outbound
  PROTECT policy without SA whose first packet starts IKE, RFC 4301 §5.1 step 3),
  ``dpd_action`` and ``close_action`` (clear, trap, restart/start) as strongSwan reads them;
* Wireshark's ``ikev2_decryption_table`` beside the gateway's ``esp_sa``.

Packets that hit a trap wait in a short queue (at most :data:`QUEUE_PACKETS` per child, for
:data:`QUEUE_SECONDS`, see :mod:`.ike_traps`), so the first ping of a trapped tunnel is
answered rather than lost. Key log entries stay when their SA is deleted: the captures of a
run must still decrypt afterwards.

This module holds the life cycle, the datagrams in and out, the engine's pump and timer, and
the SAD/SPD installs; :class:`IkeGateway` mixes in the rest, one part per module (the way
:mod:`ipseclab.ike.ike_sa` mixes in one module per exchange):

    :mod:`.ike_events`    one ``_on_<Event>`` handler per engine event; ChildState, IkeInfo
    :mod:`.ike_traps`     traps, acquires and the queue of waiting packets (RFC 4301 §5.1)
    :mod:`.ike_control`   ``ctl`` list-sas, list-ike-sas, list-conns, initiate, terminate, rekey
    :mod:`.policy_book`   who owns which SPD entry (child SAs, traps), most specific first
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import deque
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

from ipseclab.capture.ike_decode import IkeKeys, view_message
from ipseclab.drivers.gateway_sockets import IN6_PKTINFO, IN_PKTINFO, IP_PKTINFO, pktinfo_dst
from ipseclab.drivers.ike_control import IkeControl
from ipseclab.drivers.ike_events import ChildState, IkeEvents, IkeInfo
from ipseclab.drivers.ike_traps import (
    ACQUIRE_HOLDOFF,
    QUEUE_PACKETS,
    QUEUE_SECONDS,
    TRAP_REQID_BASE,
    IkeTraps,
)
from ipseclab.drivers.ike_udp import IKE_PORT, NAT_T_PORT, NON_ESP_MARKER
from ipseclab.drivers.ike_updown import UpdownRunner, UpdownScript, updown_environment
from ipseclab.drivers.netconf import local_addresses
from ipseclab.drivers.policy_book import PolicyBook, policy_priority
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ike import events
from ipseclab.ike.config import IkeConfig
from ipseclab.ike.engine import IkeEngine
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.spd import Policy, PolicyAction, Template

if TYPE_CHECKING:
    from ipseclab.config.swanctl import LoadedSwanctl
    from ipseclab.drivers.gateway import Gateway

__all__ = ["ACQUIRE_HOLDOFF", "DELETE_REKEYED_DELAY", "QUEUE_PACKETS", "QUEUE_SECONDS",
           "TRAP_REQID_BASE", "ChildState", "IkeGateway", "IkeInfo", "PolicyBook",
           "monotonic_to_unix"]

log = logging.getLogger("ipseclab.ike")

# Seconds an inbound SA outlives its rekeying (strongSwan: charon.delete_rekeyed_delay = 5).
DELETE_REKEYED_DELAY = 5.0


INIT_LOG_PER_SECOND = 50


def monotonic_to_unix(now: float) -> float:
    """The driver's clock is monotonic; certificate validity is checked in UNIX time."""
    return now + (time.time() - time.monotonic())


class IkeGateway(IkeEvents, IkeTraps, IkeControl):
    """IKEv2 for one gateway. Build with :meth:`from_swanctl`; the gateway calls the rest."""

    def __init__(self, configs: list[IkeConfig], *, close_actions: dict[tuple[str, str], str]
                 | None = None, retransmit_base: float = 1.0, retransmit_tries: int = 5,
                 source: str = "", inactivity: dict[tuple[str, str], float] | None = None,
                 keyingtries: dict[str, int] | None = None,
                 make_before_break: bool = True, mtu: int = 1400,
                 updown: dict[tuple[str, str], UpdownScript] | None = None) -> None:
        self.configs = {c.name: c for c in configs}
        # swanctl's updown: a command per (connection, child), run as children come and go
        self.updown = updown or {}
        self._updown_runner: UpdownRunner | None = None
        # reqid -> the script and the environments it ran with for "up"
        self._updown_envs: dict[int, tuple[UpdownScript, list[dict[str, str]]]] = {}
        self.close_actions = close_actions or {}
        # swanctl's keyingtries: retransmission sequences for a first connect (0: no limit)
        self.keyingtries = keyingtries or {}
        self._keying_attempts: dict[str, int] = {}
        # swanctl's inactivity: seconds without a packet after which a child SA is closed
        self.inactivity = {k: v for k, v in (inactivity or {}).items() if v > 0}
        self._activity: dict[int, tuple[int, float]] = {}  # reqid -> (packets, since)
        self._inactivity_timer: asyncio.TimerHandle | None = None
        self.source = source
        self.engine = IkeEngine(configs, retransmit_base=retransmit_base,
                                retransmit_tries=retransmit_tries, wall_clock=monotonic_to_unix,
                                report_keys=True, make_before_break=make_before_break,
                                mtu=mtu)
        self.gateway: Gateway | None = None
        self.book: PolicyBook | None = None
        self.children: dict[int, ChildState] = {}
        # Rekeyed inbound SAs kept for packets in flight: (SPI, dst) -> IKE SA, conn, child.
        self.retiring: dict[tuple[int, str], tuple[str, str, str]] = {}
        self.ike: dict[str, IkeInfo] = {}
        self._sad_keys: set[tuple[int, str]] = set()
        self._sock500: dict[int, socket.socket] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._traps: dict[tuple[str, str], int] = {}
        self._trap_of: dict[int, tuple[str, str]] = {}
        self._queue: dict[tuple[str, str], deque[tuple[float, bytes]]] = {}
        self._acquiring: dict[tuple[str, str], float] = {}
        self._unreachable: set[str] = set()
        self._then_create: dict[str, list[str]] = {}
        self._vips: dict[str, list[list[str]]] = {}  # IKE SA -> undo of each virtual IP
        self._ikelog = None
        # Each message in and out is logged as a decoder sees it ("IKE_AUTH #1 request from
        # initiator: SK{IDi, AUTH, SA, TSi, TSr}"), which is what interop debugging needs;
        # the keys to open SK stay in memory and no payload value reaches the log.
        self.message_keys = IkeKeys()
        self._init_log = [-1e9, 0, 0]  # window start, lines in it, lines left out
        self._errors_seen = 0
        self.counters = {"ike_in": 0, "ike_out": 0, "acquires": 0, "queued": 0,
                         "queue_dropped": 0, "send_errors": 0}

    @classmethod
    def from_swanctl(cls, path: Path | str, **kw: Any) -> IkeGateway:
        """Load a swanctl.conf; its connections must be usable by the engine."""
        from ipseclab.config.swanctl import load_swanctl

        loaded: LoadedSwanctl = load_swanctl(path)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        return cls.from_loaded(loaded, path, **kw)

    @classmethod
    def from_loaded(cls, loaded: LoadedSwanctl, path: Path | str, **kw: Any) -> IkeGateway:
        """The gateway for an already loaded swanctl.conf (``ipseclab check`` shows its
        warnings itself); the engine's own checks of each connection run here."""
        if not loaded.connections:
            raise ConfigError("no connections", file=str(path))
        closes = {(conn, child): extra.close_action
                  for conn, ext in loaded.extras.items()
                  for child, extra in ext.children.items()}
        idle = {(conn, child): extra.inactivity
                for conn, ext in loaded.extras.items()
                for child, extra in ext.children.items()}
        tries = {conn: ext.keyingtries for conn, ext in loaded.extras.items()}
        updown = {(conn, child): UpdownScript(extra.updown, extra.hostaccess)
                  for conn, ext in loaded.extras.items()
                  for child, extra in ext.children.items() if extra.updown}
        try:
            return cls(list(loaded.connections.values()), close_actions=closes,
                       source=str(path), inactivity=idle, keyingtries=tries, updown=updown,
                       **kw)
        except ConfigError as exc:
            if exc.file is None:
                raise ConfigError(exc.message, file=str(path), token=exc.token) from None
            raise

    # -- life cycle ------------------------------------------------------------------------

    def start(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.book = PolicyBook(gateway.engine.spd)
        gateway.ike_handler = self._on_ike_4500
        mine = sorted(a for a in local_addresses()
                      if not ipaddress.ip_address(a).is_loopback
                      and not ipaddress.ip_address(a).is_link_local)
        self.engine.local_addr = next((a for a in mine if ":" not in a), mine[0] if mine else None)
        self._open_500()
        if gateway.options.keylog_dir is not None:
            from ipseclab.keylog import IkeSaFile, keylog_dir_layout

            self._ikelog = IkeSaFile(keylog_dir_layout(gateway.options.keylog_dir)[1])
        if self.inactivity:
            self._check_inactivity()
        if self.updown:
            self._updown_runner = UpdownRunner()
        now = monotonic()
        for config in self.configs.values():
            starting = []
            for child in config.children:
                if "trap" in child.start_action:
                    self._install_trap(config, child)
                if "start" in child.start_action:
                    starting.append(child.name)
            if starting:
                self._then_create[config.name] = starting[1:]
                try:
                    self.engine.initiate(config.name, now, starting[0])
                    log.info("%s: initiating (start_action=start)", config.name)
                except ConfigError as exc:
                    log.warning("%s: cannot initiate: %s", config.name, exc.message)
        self.gateway.sync_routes()
        self._pump()
        log.info("IKE: %d connections from %s, UDP %d and %d", len(self.configs),
                 self.source or "config", IKE_PORT, NAT_T_PORT)

    def close(self) -> None:
        """Delete our IKE SAs (one INFORMATIONAL each, not waited for), stop the timer; the
        down scripts of child SAs still up run now."""
        now = monotonic()
        if self._updown_runner is not None:
            for reqid in list(self._updown_envs):
                self._run_updown_down(reqid)
            self._updown_runner.close()
            self._updown_runner = None
        for sa in self.engine.ike_sas:
            with contextlib.suppress(Exception):
                self.engine.delete_ike_sa(sa.name, now)
        with contextlib.suppress(Exception):
            for data, src, dst in self.engine.datagrams_to_send():
                self._send(data, src, dst)
                self._log_message("sent to", dst, data)  # the Deletes, logged like all else
        for timer in (self._timer, self._inactivity_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._inactivity_timer = None

    def _check_inactivity(self) -> None:
        """Close child SAs that carried no packet, either way, for their ``inactivity``
        (swanctl.conf); a trap policy stays and brings the child up again on demand."""
        now = monotonic()
        for reqid, state in list(self.children.items()):
            limit = self.inactivity.get((state.connection, state.child))
            if limit is None:
                continue
            packets = sum(sa.counters.packets for pair in state.pairs.values()
                          for sa in pair[:2] if sa is not None)
            seen, since = self._activity.get(reqid, (-1, now))
            if packets != seen:
                self._activity[reqid] = (packets, now)
            elif now - since >= limit:
                log.info("%s: child SA %s{%d} idle for %gs (inactivity): closing",
                         state.connection, state.child, reqid, limit)
                del self._activity[reqid]
                self.engine.delete_child_sa(reqid, now)
                self._pump()
        for reqid in set(self._activity) - set(self.children):
            del self._activity[reqid]
        step = max(0.25, min(self.inactivity.values()) / 4)
        self._inactivity_timer = asyncio.get_running_loop().call_later(
            step, self._check_inactivity)

    def _open_500(self) -> None:
        gw = self.gateway
        loop = asyncio.get_running_loop()
        try:
            sock = gw._socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind(("0.0.0.0", IKE_PORT))
        except OSError as exc:
            raise IpsecLabError(f"cannot bind UDP {IKE_PORT} for IKE: {exc.strerror}") from None
        self._sock500[4] = sock
        loop.add_reader(sock.fileno(), self._on_500, sock, 4)
        try:
            sock6 = gw._socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock6.bind(("::", IKE_PORT))
        except OSError:
            return
        self._sock500[6] = sock6
        loop.add_reader(sock6.fileno(), self._on_500, sock6, 6)

    # -- datagrams in and out ------------------------------------------------------------------

    def _on_500(self, sock: socket.socket, family: int) -> None:
        for _ in range(32):
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, 64)
            except BlockingIOError:
                return
            except OSError as exc:
                self.gateway.ratelog("recv500", "receiving on UDP 500: %s", exc.strerror)
                return
            dst = pktinfo_dst(anc, family)
            local = str(ipaddress.ip_address(dst)) if dst else (self.engine.local_addr or "")
            self._receive(data, (addr[0].split("%")[0], addr[1]), (local, IKE_PORT))

    def _on_ike_4500(self, message: bytes, remote: tuple[str, int], local: str) -> None:
        self._receive(message, remote, (local or self.engine.local_addr or "", NAT_T_PORT))

    def _receive(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        self.counters["ike_in"] += 1
        self._log_message("received from", src, data)
        self.engine.receive_datagram(data, src, dst, monotonic())
        self._pump()

    def _log_message(self, how: str, peer: tuple[str, int], data: bytes) -> None:
        if log.isEnabledFor(logging.INFO):
            view = view_message(data, self.message_keys)
            if view.exchange == "IKE_SA_INIT" and not self._init_log_allowed():
                return
            log.info("%s %s[%d]: %s%s", how, peer[0], peer[1], view.describe(),
                     f" ({view.detail})" if view.detail and view.status != "ok" else "")
            if log.isEnabledFor(logging.DEBUG):
                for line in view.details():
                    log.debug("  %s", line)

    def _init_log_allowed(self) -> bool:
        """IKE_SA_INIT needs no authentication, so anyone can make us log it: at most
        INIT_LOG_PER_SECOND such lines a second, then one line saying how many were left out."""
        now = monotonic()
        window = self._init_log
        if now - window[0] >= 1.0:
            if window[2]:
                log.info("%d IKE_SA_INIT messages not logged (more than %d a second)",
                         window[2], INIT_LOG_PER_SECOND)
            window[:] = [now, 0, 0]
        if window[1] >= INIT_LOG_PER_SECOND:
            window[2] += 1
            return False
        window[1] += 1
        return True

    def _send(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        family = ipaddress.ip_address(dst[0]).version
        if src[1] == IKE_PORT:
            # No non-ESP marker on port 500, whatever the peer's port: a NAT may have moved
            # the peer's 500 elsewhere (RFC 3948 §2.2 puts the marker on port 4500 only).
            sock = self._sock500.get(family)
        else:
            sock = self.gateway._udp.get(family) if self.gateway else None
            data = NON_ESP_MARKER + data
        if sock is None:
            self.counters["send_errors"] += 1
            return
        anc = []
        with contextlib.suppress(ValueError):
            packed = ipaddress.ip_address(src[0]).packed
            anc = ([(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(0, packed, bytes(4)))]
                   if family == 4 else
                   [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IN6_PKTINFO.pack(packed, 0))])
        try:
            try:
                sock.sendmsg([data], anc, 0, dst)
            except OSError:
                if not anc:
                    raise
                sock.sendto(data, dst)  # the source address is not ours (any more)
        except OSError as exc:
            self.counters["send_errors"] += 1
            if self.gateway is not None:
                self.gateway.ratelog("ike-send", "IKE to %s: %s", dst[0], exc.strerror)
            return
        self.counters["ike_out"] += 1

    def _run_updown_up(self, state: ChildState, ev: events.ChildSaEstablished) -> None:
        """swanctl's updown with up-client (or up-host) for each selector pair."""
        script = self.updown.get((state.connection, state.child))
        info = self.ike.get(ev.ike_sa)
        if script is None or info is None or self._updown_runner is None:
            return
        sa = self.engine.find_ike_sa(ev.ike_sa)
        envs = [updown_environment(
            True, child=state.child, reqid=state.reqid, interface=self.gateway.options.tun,
            ike_sa=ev.ike_sa, me=info.local, peer=info.remote, my_id=info.local_id,
            peer_id=info.remote_id, my_ts=selector.local, peer_ts=selector.remote,
            my_sourceips=sa.virtual_ips if sa else [],
            peer_sourceips=sa.remote_virtual_ips if sa else [], nat=info.nat,
            hostaccess=script.hostaccess, protocol=str(ev.inbound.protocol))
            for selector in ev.selectors]
        self._updown_envs[state.reqid] = (script, envs)
        for env in envs:
            self._updown_runner.submit(script.command, env)

    def _run_updown_down(self, reqid: int) -> None:
        """The same environments again, with down- verbs, once the child SA is gone."""
        script, envs = self._updown_envs.pop(reqid, (None, []))
        if script is None or self._updown_runner is None:
            return
        for env in envs:
            self._updown_runner.submit(script.command, {
                **env, "PLUTO_VERB": "down" + env["PLUTO_VERB"].removeprefix("up")})

    def sa_lifetime(self, sa: SecurityAssociation, hard: bool) -> None:
        """A child SA's SA reached rekey_bytes/rekey_packets (soft: rekey the pair) or
        life_bytes/life_packets (hard: delete it), RFC 4301 §4.4.2.1."""
        for state in self.children.values():
            for inbound, outbound, _ in state.pairs.values():
                if sa is inbound or sa is outbound:
                    if self.engine.child_sa_expiring(sa.spi, sa is inbound, hard, monotonic()):
                        log.info("%s{%d}: %s volume limit reached: %s", state.child,
                                 state.reqid, "hard" if hard else "soft",
                                 "deleting" if hard else "rekeying")
                    self._pump()
                    return

    def _pump(self) -> None:
        """Send what the engine wants sent, apply its events, re-arm its timer."""
        for _ in range(16):  # applying an event may start an exchange: go round again
            busy = False
            sent = []
            for data, src, dst in self.engine.datagrams_to_send():
                busy = True
                self._send(data, src, dst)
                sent.append((data, dst))
            while (event := self.engine.next_event()) is not None:
                busy = True
                try:
                    self._apply(event)
                except Exception:
                    log.exception("applying %s failed", type(event).__name__)
            for data, dst in sent:  # after the events: they bring the keys of new IKE SAs
                self._log_message("sent to", dst, data)
            if not busy:
                break
        if len(self.engine.internal_errors) > self._errors_seen:
            for error in self.engine.internal_errors[self._errors_seen:]:
                log.error("IKE engine: %s", error)
            self._errors_seen = len(self.engine.internal_errors)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.engine.get_timer()
        if when is not None:
            delay = max(0.0, when - monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.engine.handle_timer(monotonic())
        self._pump()

    # -- SAD and SPD installs (RFC 4301 §4.4) -------------------------------------------------

    def _sad_add(self, sa: SecurityAssociation) -> None:
        key = (sa.spi, str(sa.dst))
        if key not in self._sad_keys:
            self.gateway.engine.sad.add(sa)
            self._sad_keys.add(key)

    def _sad_remove(self, sa: SecurityAssociation) -> None:
        key = (sa.spi, str(sa.dst))
        self.retiring.pop(key, None)
        if key not in self._sad_keys:
            return
        self._sad_keys.discard(key)
        sad = self.gateway.engine.sad
        found = sad.lookup_inbound(sa.protocol, sa.spi, sa.dst)
        if found is not None:
            sad.remove(found)
        self.gateway._send_plan.pop(found or sa, None)

    def _sad_remove_later(self, sa: SecurityAssociation, state: ChildState) -> None:
        """Remove a rekeyed inbound SA after :data:`DELETE_REKEYED_DELAY` seconds; until
        then ``ctl list-sas`` shows it as the retiring SA of its child SA."""
        self.retiring[(sa.spi, str(sa.dst))] = (state.ike_sa, state.connection, state.child)
        asyncio.get_running_loop().call_later(DELETE_REKEYED_DELAY, self._sad_remove, sa)

    def _add_outbound(self, state: ChildState, spi_in: int) -> None:
        pair = state.pairs[spi_in]
        if not pair[2]:
            self._sad_add(pair[1])
            pair[2] = True
        self._flush_queue((state.connection, state.child))

    def _policies(self, ev: events.ChildSaEstablished) -> list[Policy]:
        out_sa, in_sa = ev.outbound, ev.inbound
        mode = ev.mode
        out_t = Template(str(out_sa.protocol), mode, src=out_sa.src, dst=out_sa.dst,
                         reqid=ev.reqid)
        # in/fwd: any SA of ours may carry it (a duplicate child SA of the same traffic too);
        # each SA still checks the inner packet against its own selector.
        in_t = Template(str(in_sa.protocol), mode, src=in_sa.src, dst=in_sa.dst)
        policies = []
        for selector in ev.selectors:
            prio = policy_priority(selector)
            policies.append(Policy(selector, "out", PolicyAction.PROTECT, prio, [out_t]))
            policies.append(Policy(selector, "in", PolicyAction.PROTECT, prio, [in_t]))
            if mode == "tunnel":
                policies.append(Policy(selector, "fwd", PolicyAction.PROTECT, prio, [in_t]))
        return policies
