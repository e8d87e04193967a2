"""The gateway's control commands and the JSON views they answer with.

``ipseclab ctl`` sends one JSON request over the control socket (:mod:`.control`);
:meth:`GatewayCommands.handle` answers it. An extension (IKE) sees each request first and
returns ``NotImplemented`` for those it leaves to the gateway.

:func:`sa_json` and :func:`policy_json` are what ``list-sas`` and ``list-policies`` show of
the SAD and SPD entries (RFC 4301 §4.4.1, §4.4.2): selectors, SPIs, algorithms, counters,
never keys; the IKE bridge adds its IKE and child SA names to the same rows. ``stats`` gives
the engine's and the daemon's counters. ``load`` and ``flush`` are in :mod:`.gateway_sad`.

A mixin of :class:`ipseclab.drivers.gateway.Gateway`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ipseclab.drivers.netconf import local_addresses
from ipseclab.errors import ConfigError
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.spd import Policy

if TYPE_CHECKING:
    from ipseclab.drivers.gateway import Gateway

__all__ = ["GatewayCommands", "policy_json", "sa_json"]

log = logging.getLogger("ipseclab.gateway")


class GatewayCommands:
    """``ctl`` commands; mixed into :class:`Gateway`."""

    def handle(self: Gateway, request: dict[str, Any]) -> Any:
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

    def list_sas(self: Gateway) -> list[dict[str, Any]]:
        mine = local_addresses()
        return [sa_json(sa, "in" if str(sa.dst) in mine else "out", None)
                for sa in self.engine.sad]

    def stats(self: Gateway) -> dict[str, Any]:
        return {"name": self.options.name, "engine": asdict(self.engine.counters),
                "driver": asdict(self.counters), "sas": len(self.engine.sad),
                "policies": len(self.engine.spd)}


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
        "replay_window": sa.replay_window, "esn": sa.esn, "path_mtu": sa.path_mtu,
    }


def policy_json(policy: Policy) -> dict[str, Any]:
    """What ``ctl list-policies --json`` shows of one SPD entry."""
    return {"index": policy.index, "direction": str(policy.direction),
            "selector": str(policy.selector), "action": policy.action.value,
            "priority": policy.priority, "packets": policy.packets,
            "templates": [str(t) for t in policy.templates]}
