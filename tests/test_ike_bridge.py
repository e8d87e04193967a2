"""The gateway's IKE bridge applying engine events to the SAD, without sockets or root."""

from __future__ import annotations

import asyncio

from test_ike_rekey import Pair, configs

from ipseclab.drivers import ike_gateway
from ipseclab.drivers.ike_gateway import IkeGateway, PolicyBook
from ipseclab.ike import events
from ipseclab.ipsec.engine import IpsecEngine


class FakeGateway:
    """The parts of the daemon the bridge touches while applying SA events."""

    def __init__(self) -> None:
        self.engine = IpsecEngine()
        self._send_plan: dict = {}

    def sync_routes(self) -> None:
        pass

    def _keylog_add(self, sas) -> None:
        pass

    def _outbound(self, packet: bytes) -> None:
        pass


def test_rekeyed_inbound_sa_outlives_its_delete(monkeypatch) -> None:
    """Packets sent on the old SA just before the DELETE must still be accepted for a while
    (strongSwan's delete_rekeyed_delay): the responder reads the DELETE from its UDP socket
    while they may still wait in the raw socket."""
    monkeypatch.setattr(ike_gateway, "DELETE_REKEYED_DELAY", 0.05)
    pair = Pair(*configs())
    pair.establish()
    reqid = pair.reqid("i")
    assert pair.i.rekey_child_sa(reqid, 5.0)
    pair.run(5.0)
    responder_events = pair.gr.events
    [rekeyed] = [e for e in responder_events if isinstance(e, events.ChildSaRekeyed)]
    old_in = rekeyed.rekeys[0]

    async def apply() -> tuple[set[int], set[int]]:
        bridge = IkeGateway([])
        bridge.gateway = FakeGateway()
        bridge.book = PolicyBook(bridge.gateway.engine.spd)
        for event in responder_events:
            handler = getattr(bridge, f"_on_{type(event).__name__}", None)
            if handler is not None:
                handler(event)
        right_after = {sa.spi for sa in bridge.gateway.engine.sad}
        await asyncio.sleep(0.2)
        later = {sa.spi for sa in bridge.gateway.engine.sad}
        return right_after, later

    right_after, later = asyncio.run(apply())
    assert old_in in right_after  # still there just after the DELETE
    assert old_in not in later  # and gone after the delay
    assert rekeyed.inbound.spi in later and rekeyed.outbound.spi in later
