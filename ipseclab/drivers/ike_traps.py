"""Traps and acquires: IKE started by the first packet that needs it (RFC 4301 §5.1, step 3).

A child with ``start_action=trap`` gets outbound PROTECT entries in the SPD whose template
carries a reqid no SA ever has (:data:`TRAP_REQID_BASE` and up). A packet that matches one
finds no SA, and the engine answers ``acquire`` instead of a protected packet;
:meth:`IkeTraps.acquire` then starts IKE for that child (CREATE_CHILD_SA over an IKE SA that is
already up, else IKE_SA_INIT), at most once per :data:`ACQUIRE_HOLDOFF` seconds, and keeps the
packet in a short queue (at most :data:`QUEUE_PACKETS`, for :data:`QUEUE_SECONDS`) that is
sent as soon as the child's outbound SA is in the SAD. So the first ping of a trapped tunnel
is answered rather than lost. When the child SA goes, the trap comes back
(:class:`ipseclab.drivers.policy_book.PolicyBook` keeps both entries).

A mixin of :class:`ipseclab.drivers.ike_gateway.IkeGateway`.
"""

from __future__ import annotations

import logging
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

from ipseclab.drivers.policy_book import policy_priority
from ipseclab.errors import ConfigError
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ipsec.selectors import Selector
from ipseclab.ipsec.spd import Policy, PolicyAction, Template

if TYPE_CHECKING:
    from ipseclab.drivers.ike_gateway import IkeGateway

__all__ = ["ACQUIRE_HOLDOFF", "QUEUE_PACKETS", "QUEUE_SECONDS", "TRAP_REQID_BASE", "IkeTraps"]

log = logging.getLogger("ipseclab.ike")

QUEUE_PACKETS = 16
QUEUE_SECONDS = 3.0
ACQUIRE_HOLDOFF = 5.0  # one IKE negotiation per trapped child at a time
TRAP_REQID_BASE = 0x7FFF0000  # reqids of trap templates: no SA ever has one


class IkeTraps:
    """Traps, acquires and the queue of waiting packets; mixed into :class:`IkeGateway`."""

    def _install_trap(self: IkeGateway, config: IkeConfig, child: ChildConfig) -> None:
        key = (config.name, child.name)
        reqid = self._traps.get(key)
        if reqid is None:
            reqid = self._traps[key] = TRAP_REQID_BASE + len(self._traps) + 1
            self._trap_of[reqid] = key
        local, remote = config.endpoints(self.engine.local_addr)
        if local is None or remote is None:
            log.warning("%s: start_action=trap needs concrete local and remote addresses",
                        config.name)
            return
        template = (Template(child.protocol, "tunnel", src=local, dst=remote, reqid=reqid)
                    if child.mode == "tunnel" else Template(child.protocol, "transport",
                                                            reqid=reqid))
        selectors = Selector.from_ts_lists(child.selectors("local", local),
                                           child.selectors("remote", remote))
        self.book.add(f"trap:{config.name}/{child.name}",
                      [Policy(s, "out", PolicyAction.PROTECT, policy_priority(s), [template])
                       for s in selectors])
        self.gateway.sync_routes()
        log.info("%s: trap installed for %s (%s)", config.name, child.name,
                 ", ".join(str(s) for s in selectors))

    def acquire(self: IkeGateway, result: Any, packet: bytes) -> None:
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

    def _bring_up(self: IkeGateway, connection: str, child: str, now: float) -> str:
        """CREATE_CHILD_SA over an established IKE SA of the connection, else IKE_SA_INIT."""
        if self.engine.create_child(connection, child, now):
            return "create_child"
        self.engine.initiate(connection, now, child)
        return "initiate"

    def _flush_queue(self: IkeGateway, key: tuple[str, str]) -> None:
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
