"""The IKE side of ``ipseclab ctl``: what swanctl's ``--list-sas``, ``--list-conns``,
``--initiate``, ``--terminate`` and ``--rekey`` do, over the gateway's control socket.

:meth:`IkeControl.handle` sees every control request before the gateway does and returns
``NotImplemented`` for those it leaves to it (:mod:`.gateway_commands`). The lists are JSON
rows: ``list-sas`` is the gateway's own (:func:`ipseclab.drivers.gateway_commands.sa_json`)
with the IKE and child SA that made each SA; ``list-ike-sas`` nests child SAs under their IKE
SA. The actions only start exchanges (IKE_SA_INIT, CREATE_CHILD_SA, INFORMATIONAL with a
Delete; RFC 7296 §1.2, §1.3, §1.4.1) and return; the events they cause arrive later
(:mod:`.ike_events`).

A mixin of :class:`ipseclab.drivers.ike_gateway.IkeGateway`.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from ipseclab.drivers.gateway_commands import GatewayCommands, sa_json
from ipseclab.drivers.netconf import local_addresses
from ipseclab.errors import ConfigError

if TYPE_CHECKING:
    from ipseclab.drivers.ike_events import ChildState
    from ipseclab.drivers.ike_gateway import IkeGateway

__all__ = ["IkeControl"]

log = logging.getLogger("ipseclab.ike")


class IkeControl:
    """``ctl`` commands for IKE; mixed into :class:`IkeGateway`."""

    def handle(self: IkeGateway, request: dict[str, Any]) -> Any:
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
        if command == "reauth":
            return self.reauth(str(request["target"]))
        if command == "load-creds":
            return self.load_creds()
        if command == "stats":
            stats = GatewayCommands.stats(self.gateway)
            stats["ike"] = {**self.counters, "ike_sas": len(self.engine.ike_sas),
                            "half_open": self.engine.half_open_count(),
                            "cookie_threshold": self.engine.cookie_threshold,
                            "dropped": self.engine.dropped,
                            "internal_errors": len(self.engine.internal_errors)}
            return stats
        return NotImplemented

    def _sa_owner(self: IkeGateway) -> dict[tuple[int, str], tuple[str, ChildState]]:
        owner = {}
        for state in self.children.values():
            for inbound, outbound, added in state.pairs.values():
                owner[(inbound.spi, str(inbound.dst))] = ("in", state)
                if added:
                    owner[(outbound.spi, str(outbound.dst))] = ("out", state)
        return owner

    def list_sas(self: IkeGateway) -> list[dict[str, Any]]:
        """The gateway's SAs as before, those IKE made marked with their IKE and child SA."""
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
            elif (sa.spi, str(sa.dst)) in self.retiring:
                ike_sa, connection, child = self.retiring[(sa.spi, str(sa.dst))]
                row.update(ike_sa=ike_sa, connection=connection, child=child, retiring=True)
            rows.append(row)
        return rows

    def list_ike_sas(self: IkeGateway) -> list[dict[str, Any]]:
        """IKE SAs with their child SAs, as ``swanctl --list-sas`` shows them."""
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

    def list_conns(self: IkeGateway) -> list[dict[str, Any]]:
        return [{
            "name": c.name, "local_addrs": c.local_addrs, "remote_addrs": c.remote_addrs,
            "proposals": c.proposals, "local_id": c.local_id, "local_auth": c.local_auth,
            "remote_id": c.remote_id, "remote_auth": c.remote_auth, "dpd_delay": c.dpd_delay,
            "rekey_time": c.rekey_time, "reauth_time": c.reauth_time,
            "children": [{
                "name": ch.name, "mode": ch.mode, "local_ts": ch.local_ts,
                "remote_ts": ch.remote_ts, "esp_proposals": ch.esp_proposals,
                "protocol": ch.protocol, "ah_proposals": ch.ah_proposals,
                "rekey_time": ch.rekey_time, "rekey_bytes": ch.rekey_bytes,
                "rekey_packets": ch.rekey_packets, "tfc_padding": ch.tfc_padding,
                "start_action": ch.start_action,
                "dpd_action": ch.dpd_action,
                "close_action": self.close_actions.get((c.name, ch.name), "none"),
                "trapped": (c.name, ch.name) in self._traps
                and f"trap:{c.name}/{ch.name}" in self.book.owners()}
                for ch in c.children],
        } for c in self.configs.values()]

    def _child_targets(self: IkeGateway, name: str) -> list[tuple[str, str]]:
        return [(c.name, ch.name) for c in self.configs.values() for ch in c.children
                if ch.name == name]

    def initiate(self: IkeGateway, target: str) -> dict[str, Any]:
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

    def terminate(self: IkeGateway, target: str) -> dict[str, Any]:
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

    def rekey(self: IkeGateway, target: str) -> dict[str, Any]:
        """``ctl rekey IKE|CONN|CHILD``: rekey now, as the timers would (§1.3.2, §1.3.3); a
        connection's name rekeys its newest IKE SA."""
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

    def load_creds(self: IkeGateway) -> dict[str, Any]:
        """``ctl load-creds``: read the CRLs in ``x509crl/`` again (as ``swanctl
        --load-creds``); the next IKE_AUTH checks the peer against them (RFC 5280 §6.3).
        IKE SAs already up are not checked again until they reauthenticate."""
        from ipseclab.config.swanctl import load_swanctl

        loaded = load_swanctl(self.source)
        updated = []
        for name, fresh in loaded.connections.items():
            config = self.configs.get(name)
            if config is not None and config.remote_auth == "pubkey":
                config.remote_crls = fresh.remote_crls
                config.revocation = fresh.revocation
                updated.append(name)
        crls = max((len(c.remote_crls) for c in self.configs.values()), default=0)
        log.info("load-creds: %d CRLs for %s", crls, ", ".join(updated) or "no connection")
        return {"crls": crls, "connections": updated}

    def reauth(self: IkeGateway, target: str) -> dict[str, Any]:
        """``ctl reauth IKE|CONN``: a new IKE SA from scratch now, as reauth_time would
        (RFC 7296 §2.8.3); the newest IKE SA of a connection when a connection is named."""
        if not self.engine.reauthenticate_ike_sa(target, monotonic()):
            raise ConfigError(f"no established IKE SA or connection named '{target}' to"
                              " reauthenticate (a gateway that leased a virtual IP to the"
                              " peer leaves it to the peer)", token=target)
        self._pump()
        return {"reauthenticating": [target]}
