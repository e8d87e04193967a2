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
:data:`QUEUE_SECONDS`) and are sent as soon as the outbound SA is in the SAD, so the first
ping of a trapped tunnel is answered rather than lost. Key log entries stay when their SA
is deleted: the captures of a run must still decrypt afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

from ipseclab.drivers.ike_udp import IKE_PORT, NAT_T_PORT, NON_ESP_MARKER
from ipseclab.drivers.netconf import local_addresses
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ike import events
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import NotifyType
from ipseclab.ike.engine import IkeEngine
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.selectors import Selector
from ipseclab.ipsec.spd import Policy, PolicyAction, Template

if TYPE_CHECKING:
    from ipseclab.config.swanctl import LoadedSwanctl
    from ipseclab.drivers.gateway import Gateway

__all__ = ["IkeGateway", "PolicyBook"]

log = logging.getLogger("ipseclab.ike")

QUEUE_PACKETS = 16
QUEUE_SECONDS = 3.0
ACQUIRE_HOLDOFF = 5.0  # one IKE negotiation per trapped child at a time
TRAP_REQID_BASE = 0x7FFF0000  # reqids of trap templates: no SA ever has one
IP_PKTINFO = 8
_IN_PKTINFO = struct.Struct("=I4s4s")
_IN6_PKTINFO = struct.Struct("=16sI")


# -- the SPD entries of child SAs and traps ------------------------------------------------



# Seconds an inbound SA outlives its rekeying (strongSwan: charon.delete_rekeyed_delay = 5).
DELETE_REKEYED_DELAY = 5.0


def monotonic_to_unix(now: float) -> float:
    """The driver's clock is monotonic; certificate validity is checked in UNIX time."""
    return now + (time.time() - time.monotonic())


class PolicyBook:
    """Who wants which SPD entry: child SAs (by reqid) and traps, per (direction, selector).

    The SPD holds one entry per selector and direction (as xfrm does), so when two owners
    want the same one (a trap and the child SA it started, or two child SAs of a duplicate
    negotiation), the newest child SA wins, then a trap; when an owner goes, the next one's
    entry is put back.
    """

    def __init__(self, spd) -> None:
        self.spd = spd
        self._wants: dict[tuple[str, Selector], dict[object, Policy]] = {}
        self._installed: dict[tuple[str, Selector], tuple[object, Policy]] = {}

    def add(self, owner: object, policies: list[Policy]) -> None:
        for policy in policies:
            key = (str(policy.direction), policy.selector)
            wants = self._wants.setdefault(key, {})
            wants.pop(owner, None)
            wants[owner] = policy
            self._settle(key)

    def remove(self, owner: object) -> None:
        for key, wants in list(self._wants.items()):
            if wants.pop(owner, None) is not None:
                if not wants:
                    del self._wants[key]
                self._settle(key)

    def owners(self) -> set[object]:
        return {o for wants in self._wants.values() for o in wants}

    def _settle(self, key: tuple[str, Selector]) -> None:
        wants = self._wants.get(key, {})
        chosen = None
        for owner, policy in wants.items():  # insertion order: the last child SA wins
            if not isinstance(owner, str) or chosen is None or isinstance(chosen[0], str):
                chosen = (owner, policy)
        current = self._installed.get(key)
        if current is not None and chosen is not None and current[1] is chosen[1]:
            return
        if current is not None:
            with contextlib.suppress(KeyError):
                self.spd.remove(current[1])
            del self._installed[key]
        if chosen is None:
            return
        old = self.spd.find(key[1], key[0])
        if old is not None:  # a manual entry for the same traffic: the negotiated one wins
            self.spd.remove(old)
            log.warning("policy %s dir %s replaced by IKE's", key[1], key[0])
        self.spd.add(chosen[1])
        self._installed[key] = chosen


def _priority(selector: Selector) -> int:
    """More specific selectors first (lower number), as strongSwan orders its policies."""
    width = sum((ts.end - ts.start).bit_length() for ts in (selector.local, selector.remote))
    return 1000 + width - (8 if selector.proto else 0)


# -- what we keep per child SA and IKE SA -----------------------------------------------------


@dataclass
class ChildState:
    """The SAs of one reqid: the pairs that are in the SAD now (more than one during a rekey)."""

    connection: str
    child: str
    reqid: int
    ike_sa: str
    mode: str
    proposal: str
    selectors: list[Selector]
    local_ts: list[str]
    remote_ts: list[str]
    installed_at: float
    pairs: dict[int, list[Any]] = field(default_factory=dict)  # spi_in -> [in, out, out added]


@dataclass
class IkeInfo:
    connection: str
    initiator: bool
    local: tuple[str, int]
    remote: tuple[str, int]
    local_id: str
    remote_id: str
    proposal: str
    nat: bool
    spi_i: bytes
    spi_r: bytes
    established_at: float
    rekeys: int = 0


class IkeGateway:
    """IKEv2 for one gateway. Build with :meth:`from_swanctl`; the gateway calls the rest."""

    def __init__(self, configs: list[IkeConfig], *, close_actions: dict[tuple[str, str], str]
                 | None = None, retransmit_base: float = 1.0, retransmit_tries: int = 5,
                 source: str = "") -> None:
        self.configs = {c.name: c for c in configs}
        self.close_actions = close_actions or {}
        self.source = source
        self.engine = IkeEngine(configs, retransmit_base=retransmit_base,
                                retransmit_tries=retransmit_tries, wall_clock=monotonic_to_unix,
                                report_keys=True)
        self.gateway: Gateway | None = None
        self.book: PolicyBook | None = None
        self.children: dict[int, ChildState] = {}
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
        self._errors_seen = 0
        self.counters = {"ike_in": 0, "ike_out": 0, "acquires": 0, "queued": 0,
                         "queue_dropped": 0, "send_errors": 0}

    @classmethod
    def from_swanctl(cls, path: Path | str, **kw: Any) -> IkeGateway:
        """Load a swanctl.conf; its connections must be usable by the engine (PSK today)."""
        from ipseclab.config.swanctl import load_swanctl

        loaded: LoadedSwanctl = load_swanctl(path)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        if not loaded.connections:
            raise ConfigError(f"{path}: no connections", file=str(path))
        closes = {(conn, child): extra.close_action
                  for conn, ext in loaded.extras.items()
                  for child, extra in ext.children.items()}
        try:
            return cls(list(loaded.connections.values()), close_actions=closes,
                       source=str(path), **kw)
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
        """Delete our IKE SAs (one INFORMATIONAL each, not waited for), stop the timer."""
        now = monotonic()
        for sa in self.engine.ike_sas:
            with contextlib.suppress(Exception):
                self.engine.delete_ike_sa(sa.name, now)
        with contextlib.suppress(Exception):
            for data, src, dst in self.engine.datagrams_to_send():
                self._send(data, src, dst)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

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
        from ipseclab.drivers.gateway import _pktinfo_dst

        for _ in range(32):
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, 64)
            except BlockingIOError:
                return
            except OSError as exc:
                self.gateway.ratelog("recv500", "receiving on UDP 500: %s", exc.strerror)
                return
            dst = _pktinfo_dst(anc, family)
            local = str(ipaddress.ip_address(dst)) if dst else (self.engine.local_addr or "")
            self._receive(data, (addr[0].split("%")[0], addr[1]), (local, IKE_PORT))

    def _on_ike_4500(self, message: bytes, remote: tuple[str, int], local: str) -> None:
        self._receive(message, remote, (local or self.engine.local_addr or "", NAT_T_PORT))

    def _receive(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        self.counters["ike_in"] += 1
        self.engine.receive_datagram(data, src, dst, monotonic())
        self._pump()

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
            anc = ([(socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, packed, bytes(4)))]
                   if family == 4 else
                   [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(packed, 0))])
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

    def _pump(self) -> None:
        """Send what the engine wants sent, apply its events, re-arm its timer."""
        for _ in range(16):  # applying an event may start an exchange: go round again
            busy = False
            for data, src, dst in self.engine.datagrams_to_send():
                busy = True
                self._send(data, src, dst)
            while (event := self.engine.next_event()) is not None:
                busy = True
                try:
                    self._apply(event)
                except Exception:
                    log.exception("applying %s failed", type(event).__name__)
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

    # -- events -> SAD, SPD, key log --------------------------------------------------------

    def _apply(self, ev: events.Event) -> None:
        handler = getattr(self, f"_on_{type(ev).__name__}", None)
        if handler is not None:
            handler(ev)

    def _on_IkeSaKeysDerived(self, ev: events.IkeSaKeysDerived) -> None:
        """The key log gets the IKE SA right after IKE_SA_INIT (as strongSwan logs its keys):
        a capture of a failed IKE_AUTH (wrong PSK) still opens in Wireshark."""
        self._ikelog_add(ev)
        log.info("%s: IKE SA %s keys derived (%s), %s", ev.connection or "?", ev.ike_sa,
                 ev.proposal, "IKE_AUTH next" if ev.initiator else "waiting for IKE_AUTH")

    def _ikelog_add(self, ev: events.IkeSaKeysDerived | events.IkeSaEstablished) -> None:
        if self._ikelog is not None:
            try:
                self._ikelog.add(ev.keylog_entry())
            except (IpsecLabError, OSError) as exc:
                log.warning("key log: IKE SA %s: %s", ev.ike_sa, exc)

    def _on_IkeSaEstablished(self, ev: events.IkeSaEstablished) -> None:
        old = getattr(ev, "old_ike_sa", "")
        info = IkeInfo(ev.connection, ev.initiator, ev.local, ev.remote, ev.local_id,
                       ev.remote_id, ev.proposal, ev.nat_detected, ev.spi_i, ev.spi_r, ev.time)
        if old and old in self.ike:
            info.rekeys = self.ike[old].rekeys + 1
            for child in self.children.values():
                if child.ike_sa == old:
                    child.ike_sa = ev.ike_sa
        self.ike[ev.ike_sa] = info
        if old and old in self._vips:
            self._vips[ev.ike_sa] = self._vips.pop(old)
        elif ev.virtual_ips:
            self._add_virtual_ips(ev.ike_sa, ev.virtual_ips)
        if ev.remote_virtual_ips and not old:
            log.info("%s: leased %s to %s", ev.connection, ", ".join(ev.remote_virtual_ips),
                     ev.remote_id)
        self._ikelog_add(ev)  # the same line again (replaced): rekeyed SAs come only here
        if old:
            log.info("%s: IKE SA %s rekeyed to %s", ev.connection, old, ev.ike_sa)
            return
        log.info("%s: IKE SA %s established (%s, %s %s <-> %s %s%s)", ev.connection, ev.ike_sa,
                 ev.proposal, ev.local_id, ev.local[0], ev.remote_id, ev.remote[0],
                 ", NAT-T" if ev.nat_detected else "")
        for child in self._then_create.pop(ev.connection, []) if ev.initiator else []:
            self.engine.create_child(ev.ike_sa, child, monotonic())

    _on_IkeSaRekeyed = _on_IkeSaEstablished

    def _on_ChildSaEstablished(self, ev: events.ChildSaEstablished) -> None:
        state = self.children.get(ev.reqid)
        if state is None:
            state = self.children[ev.reqid] = ChildState(
                ev.connection, ev.child, ev.reqid, ev.ike_sa, ev.mode, ev.proposal,
                list(ev.selectors), [str(t) for t in ev.local_ts],
                [str(t) for t in ev.remote_ts], ev.time)
            self.book.add(ev.reqid, self._policies(ev))
            self.gateway.sync_routes()
            what = "established"
        else:
            state.ike_sa = ev.ike_sa
            what = f"rekeyed (replaces {ev.rekeys[0]:08x}_i)" if ev.rekeys else "added"
        self._sad_add(ev.inbound)
        state.pairs[ev.inbound.spi] = [ev.inbound, ev.outbound, False]
        if ev.outbound_ready:
            self._add_outbound(state, ev.inbound.spi)
        self.gateway._keylog_add([ev.inbound, ev.outbound])
        log.info("%s: child SA %s{%d} %s, SPIs %08x_i %08x_o, %s%s", ev.connection, ev.child,
                 ev.reqid, what, ev.inbound.spi, ev.outbound.spi, ev.proposal,
                 "" if ev.outbound_ready else " (outbound waits)")

    _on_ChildSaRekeyed = _on_ChildSaEstablished

    def _on_ChildSaOutboundReady(self, ev: events.ChildSaOutboundReady) -> None:
        state = self.children.get(ev.reqid)
        if state is None or ev.spi_in not in state.pairs:
            return
        self._add_outbound(state, ev.spi_in)
        log.info("%s{%d}: sending on %08x_o now", ev.child, ev.reqid, ev.spi_out)

    def _add_outbound(self, state: ChildState, spi_in: int) -> None:
        pair = state.pairs[spi_in]
        if not pair[2]:
            self._sad_add(pair[1])
            pair[2] = True
        self._flush_queue((state.connection, state.child))

    def _on_ChildSaDeleted(self, ev: events.ChildSaDeleted) -> None:
        state = self.children.get(ev.reqid)
        pair = state.pairs.pop(ev.spi_in, None) if state is not None else None
        if pair is not None:
            if ev.rekeyed:
                # Packets the peer sent on the old SA may still be on their way, or wait in
                # the raw socket while the DELETE came in first on the UDP one: keep the old
                # inbound SA a little longer (strongSwan's delete_rekeyed_delay).
                asyncio.get_running_loop().call_later(DELETE_REKEYED_DELAY, self._sad_remove,
                                                      pair[0])
            else:
                self._sad_remove(pair[0])
            if pair[2]:
                self._sad_remove(pair[1])  # a collision loser's outbound was never added
        if state is None or state.pairs:
            log.info("%s{%d}: SPIs %08x_i %08x_o deleted%s", ev.child, ev.reqid, ev.spi_in,
                     ev.spi_out, " (rekeyed)" if ev.rekeyed else "")
            return
        del self.children[ev.reqid]
        self.book.remove(ev.reqid)
        if ev.ike_sa in self._unreachable:
            config = self.configs.get(state.connection)
            action = config.child(state.child).dpd_action if config else "clear"
            why = "peer unreachable (DPD)"
        elif ev.by_peer:
            action = self.close_actions.get((state.connection, state.child), "none")
            why = "deleted by peer"
        else:
            action, why = "none", "deleted"
        log.info("%s: child SA %s{%d} %s; action %s", state.connection, state.child, ev.reqid,
                 why, action)
        self._after_down(state.connection, state.child, action)
        self.gateway.sync_routes()

    def _after_down(self, connection: str, child: str, action: str) -> None:
        config = self.configs.get(connection)
        if config is None:
            return
        try:
            child_config = config.child(child)
        except ConfigError:
            return
        if action == "trap" or "trap" in child_config.start_action:
            self._install_trap(config, child_config)
        if action in ("restart", "start"):
            asyncio.get_running_loop().call_soon(self._restart, connection, child)

    def _restart(self, connection: str, child: str) -> None:
        try:
            self._bring_up(connection, child, monotonic())
        except ConfigError as exc:
            log.warning("%s: restart failed: %s", connection, exc.message)
        self._pump()

    def _add_virtual_ips(self, ike_sa: str, addresses: list[str]) -> None:
        """Our virtual IPs (RFC 7296 §2.19) go on ``lo``: the child SA's local selector is
        then one of our addresses, and its TUN route carries it as ``src`` (see
        :meth:`Gateway.desired_routes`), so the tunnelled traffic leaves from it."""
        added = []
        for address in addresses:
            prefix = 32 if ipaddress.ip_address(address).version == 4 else 128
            args = ["addr", "add", f"{address}/{prefix}", "dev", "lo"]
            undo = ["addr", "del", f"{address}/{prefix}", "dev", "lo"]
            try:
                self.gateway.netconf.run(args, undo)
            except IpsecLabError as exc:
                log.warning("virtual IP %s: %s", address, exc)
                continue
            added.append(undo)
            log.info("virtual IP %s on lo (IKE SA %s)", address, ike_sa)
        self._vips[ike_sa] = added

    def _remove_virtual_ips(self, ike_sa: str) -> None:
        for undo in self._vips.pop(ike_sa, []):
            self.gateway.netconf.forget(undo)

    def _on_IkeSaDeleted(self, ev: events.IkeSaDeleted) -> None:
        if not ev.rekeyed:
            self._remove_virtual_ips(ev.ike_sa)
        info = self.ike.pop(ev.ike_sa, None)
        self._unreachable.discard(ev.ike_sa)
        if not ev.rekeyed:
            name = info.connection if info else (ev.connection or "?")
            log.info("%s: IKE SA %s deleted: %s", name, ev.ike_sa, ev.reason)

    def _on_PeerUnreachable(self, ev: events.PeerUnreachable) -> None:
        self._unreachable.add(ev.ike_sa)
        info = self.ike.get(ev.ike_sa)
        log.warning("%s: peer %s does not answer (IKE SA %s)",
                    info.connection if info else "?", info.remote[0] if info else "?",
                    ev.ike_sa)

    def _on_ChildSaFailed(self, ev: events.ChildSaFailed) -> None:
        log.warning("child SA %s failed: notify %d %s", ev.child or "?", ev.notify, ev.reason)
        self._log_mismatch(ev.notify, ev.received, ev.configured)

    def _on_NegotiationFailed(self, ev: events.NegotiationFailed) -> None:
        log.warning("IKE SA %s failed: notify %d %s%s", ev.ike_sa, ev.notify, ev.reason,
                    " (by peer)" if ev.by_peer else "")
        self._log_mismatch(ev.notify, ev.received, ev.configured)

    @staticmethod
    def _log_mismatch(notify: int, received: str, configured: str) -> None:
        """What the peer asked for against what we are configured for (our refusals)."""
        if not (received or configured):
            return
        log.info("  %s: received   %s", _notify_name(notify), received)
        log.info("  %s: configured %s", _notify_name(notify), configured)

    def _on_AuthenticationFailed(self, ev: events.AuthenticationFailed) -> None:
        # The reason names the check that failed (identity, method, AUTH value), never a key.
        log.warning("%s: authentication failed: %s%s", ev.connection or "?", ev.reason,
                    " (by peer)" if ev.by_peer else "")

    def _on_IkeSaRekeyFailed(self, ev: events.IkeSaRekeyFailed) -> None:
        log.warning("IKE SA %s rekey refused: notify %d %s", ev.ike_sa, ev.notify, ev.reason)

    def _sad_add(self, sa: SecurityAssociation) -> None:
        key = (sa.spi, str(sa.dst))
        if key not in self._sad_keys:
            self.gateway.engine.sad.add(sa)
            self._sad_keys.add(key)

    def _sad_remove(self, sa: SecurityAssociation) -> None:
        key = (sa.spi, str(sa.dst))
        if key not in self._sad_keys:
            return
        self._sad_keys.discard(key)
        sad = self.gateway.engine.sad
        found = sad.lookup_inbound(sa.protocol, sa.spi, sa.dst)
        if found is not None:
            sad.remove(found)
        self.gateway._send_plan.pop(found or sa, None)

    def _policies(self, ev: events.ChildSaEstablished) -> list[Policy]:
        out_sa, in_sa = ev.outbound, ev.inbound
        mode = ev.mode
        out_t = Template("esp", mode, src=out_sa.src, dst=out_sa.dst, reqid=ev.reqid)
        # in/fwd: any SA of ours may carry it (a duplicate child SA of the same traffic too);
        # each SA still checks the inner packet against its own selector.
        in_t = Template("esp", mode, src=in_sa.src, dst=in_sa.dst)
        policies = []
        for selector in ev.selectors:
            prio = _priority(selector)
            policies.append(Policy(selector, "out", PolicyAction.PROTECT, prio, [out_t]))
            policies.append(Policy(selector, "in", PolicyAction.PROTECT, prio, [in_t]))
            if mode == "tunnel":
                policies.append(Policy(selector, "fwd", PolicyAction.PROTECT, prio, [in_t]))
        return policies

    # -- traps and acquires (RFC 4301 §5.1) ------------------------------------------------

    def _install_trap(self, config: IkeConfig, child: ChildConfig) -> None:
        key = (config.name, child.name)
        reqid = self._traps.get(key)
        if reqid is None:
            reqid = self._traps[key] = TRAP_REQID_BASE + len(self._traps) + 1
            self._trap_of[reqid] = key
        local = next((a for a in config.local_addrs if _concrete(a)), self.engine.local_addr)
        remote = next((a for a in config.remote_addrs if _concrete(a)), None)
        if local is None or remote is None:
            log.warning("%s: start_action=trap needs concrete local and remote addresses",
                        config.name)
            return
        template = (Template("esp", "tunnel", src=local, dst=remote, reqid=reqid)
                    if child.mode == "tunnel" else Template("esp", "transport", reqid=reqid))
        selectors = Selector.from_ts_lists(child.selectors("local", local),
                                           child.selectors("remote", remote))
        self.book.add(f"trap:{config.name}/{child.name}",
                      [Policy(s, "out", PolicyAction.PROTECT, _priority(s), [template])
                       for s in selectors])
        self.gateway.sync_routes()
        log.info("%s: trap installed for %s (%s)", config.name, child.name,
                 ", ".join(str(s) for s in selectors))

    def acquire(self, result: Any, packet: bytes) -> None:
        """A packet for a PROTECT policy without SA: queue it, and start IKE once."""
        template = result.template
        key = self._trap_of.get(template.reqid) if template is not None else None
        if key is None:
            state = self.children.get(template.reqid) if template is not None else None
            if state is None:
                self.gateway.ratelog("acquire", "no SA yet: %s (packet dropped)", result.detail,
                                     level=logging.INFO)
                return
            key = (state.connection, state.child)
        now = monotonic()
        queue = self._queue.setdefault(key, deque())
        while queue and now - queue[0][0] > QUEUE_SECONDS:
            queue.popleft()
            self.counters["queue_dropped"] += 1
        if len(queue) >= QUEUE_PACKETS:
            queue.popleft()
            self.counters["queue_dropped"] += 1
        queue.append((now, packet))
        self.counters["queued"] += 1
        if self._acquiring.get(key, 0.0) > now:
            return
        self._acquiring[key] = now + ACQUIRE_HOLDOFF
        self.counters["acquires"] += 1
        log.info("%s: acquire for %s: %s", key[0], key[1], result.detail)
        try:
            self._bring_up(key[0], key[1], now)
        except ConfigError as exc:
            log.warning("%s: cannot initiate: %s", key[0], exc.message)
        self._pump()

    def _bring_up(self, connection: str, child: str, now: float) -> str:
        """CREATE_CHILD_SA over an established IKE SA of the connection, else IKE_SA_INIT."""
        if self.engine.create_child(connection, child, now):
            return "create_child"
        self.engine.initiate(connection, now, child)
        return "initiate"

    def _flush_queue(self, key: tuple[str, str]) -> None:
        queue = self._queue.pop(key, None)
        self._acquiring.pop(key, None)
        if not queue:
            return
        now = monotonic()
        for when, packet in queue:
            if now - when <= QUEUE_SECONDS:
                self.gateway._outbound(packet)
            else:
                self.counters["queue_dropped"] += 1

    # -- control commands -------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> Any:
        command = request.get("command")
        if command == "list-sas":
            return self.list_sas()
        if command == "list-ike-sas":
            return self.list_ike_sas()
        if command == "list-conns":
            return self.list_conns()
        if command == "initiate":
            return self.initiate(str(request["target"]))
        if command == "terminate":
            return self.terminate(str(request["target"]))
        if command == "rekey":
            return self.rekey(str(request["target"]))
        if command == "stats":
            from ipseclab.drivers.gateway import Gateway

            stats = Gateway.stats(self.gateway)
            stats["ike"] = {**self.counters, "ike_sas": len(self.engine.ike_sas),
                            "half_open": self.engine.half_open_count(),
                            "cookie_threshold": self.engine.cookie_threshold,
                            "dropped": self.engine.dropped,
                            "internal_errors": len(self.engine.internal_errors)}
            return stats
        return NotImplemented

    def _sa_owner(self) -> dict[tuple[int, str], tuple[str, ChildState]]:
        owner = {}
        for state in self.children.values():
            for inbound, outbound, added in state.pairs.values():
                owner[(inbound.spi, str(inbound.dst))] = ("in", state)
                if added:
                    owner[(outbound.spi, str(outbound.dst))] = ("out", state)
        return owner

    def list_sas(self) -> list[dict[str, Any]]:
        """The gateway's SAs as before, those IKE made marked with their IKE and child SA."""
        from ipseclab.drivers.gateway import sa_json

        owner = self._sa_owner()
        mine = local_addresses()
        rows = []
        for sa in self.gateway.engine.sad:
            found = owner.get((sa.spi, str(sa.dst)))
            direction = found[0] if found else ("in" if str(sa.dst) in mine else "out")
            row = sa_json(sa, direction, None)
            if found:
                state = found[1]
                row.update(ike_sa=state.ike_sa, connection=state.connection, child=state.child)
            rows.append(row)
        return rows

    def list_ike_sas(self) -> list[dict[str, Any]]:
        """IKE SAs with their child SAs, as ``swanctl --list-sas`` shows them."""
        from ipseclab.drivers.gateway import sa_json

        now = monotonic()
        out = []
        for sa in self.engine.ike_sas:
            info = self.ike.get(sa.name)
            row: dict[str, Any] = {
                "name": sa.name, "state": sa.state.name,
                "connection": sa.config.name if sa.config else None,
                "initiator": sa.initiator, "local": list(sa.local), "remote": list(sa.remote),
                "children": []}
            if info is not None:
                row.update(local_id=info.local_id, remote_id=info.remote_id,
                           proposal=info.proposal, nat=info.nat, rekeys=info.rekeys,
                           established=round(now - info.established_at, 1))
            for state in self.children.values():
                if state.ike_sa != sa.name:
                    continue
                sas = []
                for inbound, outbound, added in state.pairs.values():
                    sas.append(sa_json(inbound, "in"))
                    if added:
                        sas.append(sa_json(outbound, "out"))
                row["children"].append({
                    "name": state.child, "reqid": state.reqid, "mode": state.mode,
                    "proposal": state.proposal, "local_ts": state.local_ts,
                    "remote_ts": state.remote_ts,
                    "installed": round(now - state.installed_at, 1), "sas": sas})
            out.append(row)
        return out

    def list_conns(self) -> list[dict[str, Any]]:
        return [{
            "name": c.name, "local_addrs": c.local_addrs, "remote_addrs": c.remote_addrs,
            "proposals": c.proposals, "local_id": c.local_id, "local_auth": c.local_auth,
            "remote_id": c.remote_id, "remote_auth": c.remote_auth, "dpd_delay": c.dpd_delay,
            "rekey_time": c.rekey_time,
            "children": [{
                "name": ch.name, "mode": ch.mode, "local_ts": ch.local_ts,
                "remote_ts": ch.remote_ts, "esp_proposals": ch.esp_proposals,
                "rekey_time": ch.rekey_time, "start_action": ch.start_action,
                "dpd_action": ch.dpd_action,
                "close_action": self.close_actions.get((c.name, ch.name), "none"),
                "trapped": (c.name, ch.name) in self._traps
                and f"trap:{c.name}/{ch.name}" in self.book.owners()}
                for ch in c.children],
        } for c in self.configs.values()]

    def _child_targets(self, name: str) -> list[tuple[str, str]]:
        return [(c.name, ch.name) for c in self.configs.values() for ch in c.children
                if ch.name == name]

    def initiate(self, target: str) -> dict[str, Any]:
        """``ctl initiate CONN|CHILD``: IKE_SA_INIT (or CREATE_CHILD_SA); does not wait."""
        now = monotonic()
        if target in self.configs:
            config = self.configs[target]
            child = config.children[0].name if config.children else None
            self.engine.initiate(target, now, child)
            how = "initiate"
        else:
            found = self._child_targets(target)
            if not found:
                raise ConfigError(f"no connection or child named '{target}'", token=target)
            target_conn, child = found[0]
            how = self._bring_up(target_conn, child, now)
            target = target_conn
        self._pump()
        return {"connection": target, "child": child, "how": how}

    def terminate(self, target: str) -> dict[str, Any]:
        """``ctl terminate IKE|CONN|CHILD|REQID``: Delete in an INFORMATIONAL (§1.4.1)."""
        now = monotonic()
        done: list[str] = []
        if self.engine.delete_ike_sa(target, now):
            done.append(target)
        elif target in self.configs:
            for sa in self.engine.ike_sas:
                if sa.config is not None and sa.config.name == target:
                    self.engine.delete_ike_sa(sa.name, now)
                    done.append(sa.name)
        else:
            reqids = [s.reqid for s in self.children.values() if s.child == target]
            if target.isdigit():
                reqids.append(int(target))
            for reqid in reqids:
                if self.engine.delete_child_sa(reqid, now):
                    done.append(f"{target}{{{reqid}}}")
            if not reqids and not self._child_targets(target):
                raise ConfigError(f"no IKE SA, connection or child named '{target}'",
                                  token=target)
        self._pump()
        return {"terminated": done}

    def rekey(self, target: str) -> dict[str, Any]:
        """``ctl rekey IKE|CHILD``: rekey now, as the timers would (§1.3.2, §1.3.3)."""
        now = monotonic()
        done: list[str] = []
        if self.engine.rekey_ike_sa(target, now):
            done.append(target)
        else:
            for state in list(self.children.values()):
                if state.child == target and self.engine.rekey_child_sa(state.reqid, now):
                    done.append(f"{target}{{{state.reqid}}}")
        if not done:
            raise ConfigError(f"nothing to rekey named '{target}'", token=target)
        self._pump()
        return {"rekeyed": done}


def _notify_name(notify: int) -> str:
    try:
        return NotifyType(notify).name
    except ValueError:
        return f"notify {notify}"


def _concrete(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
