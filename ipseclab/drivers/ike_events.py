"""What the IKE bridge does with each engine event: one ``_on_<Event>`` handler per event.

The engine (:mod:`ipseclab.ike.engine`) reports what happened as small dataclasses
(:mod:`ipseclab.ike.events`); :meth:`IkeEvents._apply` finds the handler by the event's class
name. The handlers keep the bridge's records (:class:`IkeInfo` per IKE SA, :class:`ChildState`
per child SA) and change the data plane through :class:`ipseclab.drivers.ike_gateway.IkeGateway`:

    IkeSaKeysDerived, IkeSaEstablished/Rekeyed   key log lines (``ikev2_decryption_table``),
                                                 virtual IPs (RFC 7296 §2.19), the further
                                                 children of ``start_action=start``
    ChildSaEstablished/Rekeyed, OutboundReady    SAD and SPD entries, make-before-break
                                                 (RFC 7296 §2.8): inbound at once, outbound
                                                 when the peer can receive on it
    ChildSaDeleted                               SAs out of the SAD (a rekeyed inbound SA a
                                                 little later), then dpd_action/close_action
    IkeSaDeleted, PeerUnreachable                forget the IKE SA; DPD (RFC 7296 §1.4) marks
                                                 its child SAs for ``dpd_action``
    ChildSaFailed, NegotiationFailed,            one log line, with what the peer asked for
    AuthenticationFailed, IkeSaRekeyFailed       against what is configured; never a key

A mixin of :class:`IkeGateway`, as the exchanges of :mod:`ipseclab.ike.ike_sa` are of ``IkeSa``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any

from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ike import events
from ipseclab.ike.sa_common import notify_name as _notify_name
from ipseclab.ipsec.selectors import Selector

if TYPE_CHECKING:
    from ipseclab.drivers.ike_gateway import IkeGateway

__all__ = ["ChildState", "IkeEvents", "IkeInfo"]

log = logging.getLogger("ipseclab.ike")


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
    """What ``list-ike-sas`` shows of one IKE SA beyond the engine's own state."""

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


class IkeEvents:
    """The engine's events applied to the gateway; mixed into :class:`IkeGateway`."""

    def _apply(self: IkeGateway, ev: events.Event) -> None:
        handler = getattr(self, f"_on_{type(ev).__name__}", None)
        if handler is not None:
            handler(ev)

    def _on_IkeSaKeysDerived(self: IkeGateway, ev: events.IkeSaKeysDerived) -> None:
        """The key log gets the IKE SA right after IKE_SA_INIT (as strongSwan logs its keys):
        a capture of a failed IKE_AUTH (wrong PSK) still opens in Wireshark."""
        self._ikelog_add(ev)
        log.info("%s: IKE SA %s keys derived (%s), %s", ev.connection or "?", ev.ike_sa,
                 ev.proposal, "IKE_AUTH next" if ev.initiator else "waiting for IKE_AUTH")

    def _ikelog_add(self: IkeGateway,
                    ev: events.IkeSaKeysDerived | events.IkeSaEstablished) -> None:
        try:
            entry = ev.keylog_entry()
            self.message_keys.add(entry)  # in memory, for the message log only
            if self._ikelog is not None:
                self._ikelog.add(entry)
        except (IpsecLabError, OSError) as exc:
            log.warning("key log: IKE SA %s: %s", ev.ike_sa, exc)

    def _on_IkeSaEstablished(self: IkeGateway, ev: events.IkeSaEstablished) -> None:
        old = getattr(ev, "old_ike_sa", "")
        info = IkeInfo(ev.connection, ev.initiator, ev.local, ev.remote, ev.local_id,
                       ev.remote_id, ev.proposal, ev.nat_detected, ev.spi_i, ev.spi_r, ev.time)
        if old and old in self.ike:
            info.rekeys = self.ike[old].rekeys + 1
            for child in self.children.values():
                if child.ike_sa == old:
                    child.ike_sa = ev.ike_sa
        self.ike[ev.ike_sa] = info
        self._keying_attempts.pop(ev.connection, None)
        reauth = ev.reauthenticates
        if old and old in self._vips:
            self._vips[ev.ike_sa] = self._vips.pop(old)
        elif reauth and self._vip_addresses(reauth) == ev.virtual_ips:
            self._vips[ev.ike_sa] = self._vips.pop(reauth, [])  # kept by the reauthentication
        elif ev.virtual_ips:
            self._add_virtual_ips(ev.ike_sa, ev.virtual_ips)
        if ev.remote_virtual_ips and not old:
            log.info("%s: leased %s to %s", ev.connection, ", ".join(ev.remote_virtual_ips),
                     ev.remote_id)
        self._ikelog_add(ev)  # the same line again (replaced): rekeyed SAs come only here
        if old:
            log.info("%s: IKE SA %s rekeyed to %s", ev.connection, old, ev.ike_sa)
            return
        log.info("%s: IKE SA %s established (%s, %s %s <-> %s %s%s)%s", ev.connection,
                 ev.ike_sa, ev.proposal, ev.local_id, ev.local[0], ev.remote_id, ev.remote[0],
                 ", NAT-T" if ev.nat_detected else "",
                 f", reauthenticating {reauth}" if reauth else "")
        if reauth:
            return  # the child SAs come from the reauthentication, not from start_action
        for child in self._then_create.pop(ev.connection, []) if ev.initiator else []:
            self.engine.create_child(ev.ike_sa, child, monotonic())

    _on_IkeSaRekeyed = _on_IkeSaEstablished

    def _on_ChildSaEstablished(self: IkeGateway, ev: events.ChildSaEstablished) -> None:
        state = self.children.get(ev.reqid)
        if state is None:
            state = self.children[ev.reqid] = ChildState(
                ev.connection, ev.child, ev.reqid, ev.ike_sa, ev.mode, ev.proposal,
                list(ev.selectors), [str(t) for t in ev.local_ts],
                [str(t) for t in ev.remote_ts], ev.time)
            self.book.add(ev.reqid, self._policies(ev))
            self.gateway.sync_routes()
            what = "established"
            self._run_updown_up(state, ev)
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

    def _on_ChildSaOutboundReady(self: IkeGateway, ev: events.ChildSaOutboundReady) -> None:
        state = self.children.get(ev.reqid)
        if state is None or ev.spi_in not in state.pairs:
            return
        self._add_outbound(state, ev.spi_in)
        log.info("%s{%d}: sending on %08x_o now", ev.child, ev.reqid, ev.spi_out)

    def _on_ChildSaDeleted(self: IkeGateway, ev: events.ChildSaDeleted) -> None:
        state = self.children.get(ev.reqid)
        pair = state.pairs.pop(ev.spi_in, None) if state is not None else None
        if pair is not None:
            if ev.rekeyed:
                # Packets the peer sent on the old SA may still be on their way, or wait in
                # the raw socket while the DELETE came in first on the UDP one: keep the old
                # inbound SA a little longer (strongSwan's delete_rekeyed_delay).
                self._sad_remove_later(pair[0], state)
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
        self._run_updown_down(ev.reqid)
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

    def _after_down(self: IkeGateway, connection: str, child: str, action: str) -> None:
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

    def _restart(self: IkeGateway, connection: str, child: str) -> None:
        try:
            self._bring_up(connection, child, monotonic())
        except ConfigError as exc:
            log.warning("%s: restart failed: %s", connection, exc.message)
        self._pump()

    def _add_virtual_ips(self: IkeGateway, ike_sa: str, addresses: list[str]) -> None:
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

    def _vip_addresses(self: IkeGateway, ike_sa: str) -> list[str]:
        """The virtual IPs we put on ``lo`` for ``ike_sa`` (from their undo commands)."""
        return [undo[2].split("/")[0] for undo in self._vips.get(ike_sa, [])]

    def _remove_virtual_ips(self: IkeGateway, ike_sa: str) -> None:
        for undo in self._vips.pop(ike_sa, []):
            self.gateway.netconf.forget(undo)

    def _on_IkeSaDeleted(self: IkeGateway, ev: events.IkeSaDeleted) -> None:
        if not ev.rekeyed:
            self._remove_virtual_ips(ev.ike_sa)
        info = self.ike.pop(ev.ike_sa, None)
        never_answered = info is None and ev.ike_sa in self._unreachable
        self._unreachable.discard(ev.ike_sa)
        if not ev.rekeyed:
            name = info.connection if info else (ev.connection or "?")
            log.info("%s: IKE SA %s deleted: %s", name, ev.ike_sa, ev.reason)
        if never_answered and ev.connection:
            self._retry_keying(ev.connection)

    def _retry_keying(self: IkeGateway, connection: str) -> None:
        """swanctl's keyingtries: a first connect whose peer never answered starts again, up
        to keyingtries sequences of retransmissions in all (0: without end), for the child
        SAs with start_action start."""
        tries = self.keyingtries.get(connection, 1)
        done = self._keying_attempts.get(connection, 1)
        config = self.configs.get(connection)
        starting = [c.name for c in config.children if "start" in c.start_action] if config \
            else []
        if not starting or (tries and done >= tries):
            self._keying_attempts.pop(connection, None)
            return
        self._keying_attempts[connection] = done + 1
        log.info("%s: keyingtries: attempt %d of %s", connection, done + 1, tries or "no limit")
        self._then_create[connection] = starting[1:]
        asyncio.get_running_loop().call_soon(self._restart, connection, starting[0])

    def _on_PeerUnreachable(self: IkeGateway, ev: events.PeerUnreachable) -> None:
        self._unreachable.add(ev.ike_sa)
        info = self.ike.get(ev.ike_sa)
        log.warning("%s: peer %s does not answer (IKE SA %s)",
                    info.connection if info else "?", info.remote[0] if info else "?",
                    ev.ike_sa)

    def _on_ChildSaFailed(self: IkeGateway, ev: events.ChildSaFailed) -> None:
        log.warning("child SA %s failed: notify %d %s", ev.child or "?", ev.notify, ev.reason)
        self._log_mismatch(ev.notify, ev.received, ev.configured)

    def _on_NegotiationFailed(self: IkeGateway, ev: events.NegotiationFailed) -> None:
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

    def _on_AuthenticationFailed(self: IkeGateway, ev: events.AuthenticationFailed) -> None:
        # The reason names the check that failed (identity, method, AUTH value), never a key.
        log.warning("%s: authentication failed: %s%s", ev.connection or "?", ev.reason,
                    " (by peer)" if ev.by_peer else "")

    def _on_IkeSaRekeyFailed(self: IkeGateway, ev: events.IkeSaRekeyFailed) -> None:
        log.warning("IKE SA %s rekey refused: notify %d %s", ev.ike_sa, ev.notify, ev.reason)

