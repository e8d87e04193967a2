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


def test_ike_sa_init_log_lines_are_bounded(monkeypatch, caplog) -> None:
    """Anyone can send IKE_SA_INIT: the message log keeps to INIT_LOG_PER_SECOND lines a
    second of them and then says how many it left out."""
    from ipseclab.ike.engine import IkeEngine

    initiator = IkeEngine(configs()[0])
    initiator.initiate("site", 0.0)
    (request, _src, _dst), *_ = initiator.datagrams_to_send()
    clock = [100.0]
    monkeypatch.setattr(ike_gateway, "monotonic", lambda: clock[0])
    bridge = IkeGateway([])
    limit = ike_gateway.INIT_LOG_PER_SECOND
    with caplog.at_level("INFO", logger="ipseclab.ike"):
        for _ in range(limit + 70):
            bridge._log_message("received from", ("192.0.2.9", 500), request)
        clock[0] += 1.5
        bridge._log_message("received from", ("192.0.2.9", 500), request)
    lines = [r.getMessage() for r in caplog.records]
    shown = [line for line in lines if "IKE_SA_INIT #0 request from initiator" in line]
    assert len(shown) == limit + 1
    assert f"70 IKE_SA_INIT messages not logged (more than {limit} a second)" in lines
    assert lines.index(next(x for x in lines if "not logged" in x)) == limit
