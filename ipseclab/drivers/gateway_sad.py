"""The gateway's SAD and SPD while it runs: SAs come in, expire and go, and the key log follows.

* ``load`` adds SAs and policies (``ctl load``: manual ones, all policies or none), ``flush``
  removes them all: the two halves of ``ip xfrm state/policy``. The TUN routes follow the
  SPD (:mod:`.gateway_routes`). IKE installs its own SAs (:mod:`.ike_gateway`).
* Lifetimes (RFC 4301 §4.4.2.1). The engine checks byte and packet limits as packets pass;
  time limits expire without traffic too, so a task polls the engine at its next deadline.
  A soft limit says a rekey is due, a hard one removes the SA.
* The key log. Each ESP SA is written to Wireshark's ``esp_sa`` file as it enters the SAD,
  so every capture of the run opens decrypted; ``flush`` takes the lines out again.

A mixin of :class:`ipseclab.drivers.gateway.Gateway`.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING

from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ipsec.sa import Protocol as IpsecProtocol
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.spd import Policy

if TYPE_CHECKING:
    from ipseclab.drivers.gateway import Gateway

__all__ = ["GatewaySad"]

log = logging.getLogger("ipseclab.gateway")


class GatewaySad:
    """Loading, flushing, lifetimes and the ``esp_sa`` key log; mixed into :class:`Gateway`."""

    def load(self: Gateway, states: list[SecurityAssociation], policies: list[Policy]) -> None:
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

    def flush(self: Gateway) -> None:
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

    def _keylog_add(self: Gateway, sas: list[SecurityAssociation]) -> None:
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

    def _lifetime_events(self: Gateway) -> None:
        """Act on SA lifetimes: log soft limits (a rekey is due), forget hard-expired SAs;
        IKE rekeys or deletes the child SA of an SA it made."""
        events, self.engine.events = self.engine.events, []
        for ev in events:
            if ev.hard:
                self._send_plan.pop(ev.sa, None)
                log.warning("%s: hard lifetime reached (%s); SA removed", ev.sa.name, ev.event)
            else:
                log.info("%s: soft lifetime reached (%s); a rekey is due", ev.sa.name, ev.event)
            if self.extension is not None:
                self.extension.sa_lifetime(ev.sa, ev.hard)

    async def _lifetime_loop(self: Gateway) -> None:
        """Time limits expire without traffic too: poll the engine at its next deadline."""
        while True:
            deadline = self.engine.next_deadline()
            delay = 1.0 if deadline is None else min(1.0, max(0.0, deadline - monotonic()))
            await asyncio.sleep(delay)
            self.engine.poll(monotonic())
            if self.engine.events:
                self._lifetime_events()
