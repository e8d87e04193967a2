"""The INFORMATIONAL exchange (RFC 7296 §1.4): deleting child SAs and the IKE SA, and dead
peer detection. A mixin of :class:`ipseclab.ike.ike_sa.IkeSa`; its table names these handlers.

    delete child SAs --> HDR, SK {D(ESP, SPIs)}    <-- HDR, SK {D(ESP, the peer's SPIs)}
    delete IKE SA    --> HDR, SK {D(IKE)}          <-- HDR, SK {}
    liveness (DPD)   --> HDR, SK {}                <-- HDR, SK {}

Deletes are by the SPI the deleting side receives on (§1.4.1, §3.11). When both sides delete
the same child SA at once, each answers without it (§2.25.1). A child SA that a rekey replaced
goes here too, and its successor may then send (§2.8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipseclab.ike import events
from ipseclab.ike.child import ChildSa
from ipseclab.ike.constants import ExchangeType, NotifyType, ProtocolId
from ipseclab.ike.message import Message
from ipseclab.ike.payload_base import Payload
from ipseclab.ike.payloads import Delete, Notify
from ipseclab.ike.sa_common import State

if TYPE_CHECKING:
    from ipseclab.ike.ike_sa import IkeSa

__all__ = ["InformationalExchange"]

_INFO = ExchangeType.INFORMATIONAL


class InformationalExchange:
    """INFORMATIONAL for both roles; mixed into :class:`IkeSa` (which holds the state)."""

    # -- INFORMATIONAL (§1.4) ---------------------------------------------------------------

    def check_liveness(self: IkeSa, now: float) -> None:
        """An empty INFORMATIONAL request: the peer must answer (§1.4, dead peer detection)."""
        self.request(_INFO, [], now, None)

    def delete_child(self: IkeSa, reqid: int, now: float) -> bool:
        """Delete every child SA pair of ``reqid`` (both, while a rekey is under way)."""
        targets = [c for c in self.children
                   if c.reqid == reqid and c.spi_in not in self._deleting]
        if not targets or self.state is not State.ESTABLISHED:
            return False
        self._request_child_delete(targets, now)
        return True

    def _request_child_delete(self: IkeSa, children: list[ChildSa], now: float) -> None:
        for child in children:
            self._deleting.add(child.spi_in)
            if child.state in ("installed", "rekeying"):
                child.state = "deleting"
        deletes = [Delete.child_sas(protocol, [c.spi_in.to_bytes(4, "big") for c in children
                                               if c.config.protocol_id == protocol])
                   for protocol in sorted({c.config.protocol_id for c in children})]
        self.request(_INFO, deletes, now, None)  # one Delete per protocol (§3.11)

    def delete(self: IkeSa, now: float) -> None:
        """Delete this IKE SA and its child SAs: a Delete(IKE) request (§1.4.1)."""
        if self.state is not State.ESTABLISHED:
            self._delete(now, "deleted locally")
            return
        self.state = State.DELETING
        self._drop_queue(now)
        if self._pending is not None:
            self._pending = None
        self.request(_INFO, [Delete(ProtocolId.IKE)], now, None)

    def _on_informational_request(self: IkeSa, message: Message, inner: list[Payload],
                                  now: float) -> None:
        deletes = [p for p in inner if isinstance(p, Delete)]
        if any(isinstance(p, Notify) and p.notify_type == NotifyType.AUTHENTICATION_FAILED
               for p in inner) and message.message_id == 2 and not self.initiator:
            # §2.21.2: the initiator refused our AUTH after we had established the IKE SA.
            self._respond(message, [])
            self._event(events.AuthenticationFailed, now,
                        connection=self.config.name if self.config else "",
                        reason="the initiator rejected our AUTH (AUTHENTICATION_FAILED)",
                        by_peer=True)
            self._delete(now, "authentication failed", by_peer=True)
            return
        if any(d.protocol_id == ProtocolId.IKE for d in deletes):
            self._respond(message, [])
            successor = self._home()
            if successor is not self:
                successor._adopt_children(self, now)  # §2.18: they live on in the new IKE SA
            self._delete(now, "deleted by peer", by_peer=True)
            return
        home = self._home()
        reply: list[Payload] = []
        for delete in deletes:
            if delete.protocol_id not in (ProtocolId.ESP, ProtocolId.AH):
                continue
            ours = []
            for spi in delete.spis:
                child = next((c for c in home.children
                              if c.spi_out == int.from_bytes(spi, "big")
                              and c.config.protocol_id == delete.protocol_id), None)
                if child is None:
                    continue
                if child.spi_in in home._deleting:
                    # §2.25.1: both sides close it; answer without it, it is gone anyway.
                    home._deleting.discard(child.spi_in)
                else:
                    ours.append(child.spi_in.to_bytes(4, "big"))
                home._remove_child(child, now, by_peer=True)
            if ours:
                reply.append(Delete.child_sas(delete.protocol_id, ours))
        self._respond(message, reply)

    def _on_informational_response(self: IkeSa, message: Message, inner: list[Payload],
                                   now: float) -> None:
        pending = self._pending
        self._request_done(now)
        if self.state is State.DELETING:
            self._delete(now, "deleted locally")
            return
        if pending is None:
            return
        for delete in (p for p in inner if isinstance(p, Delete)):
            for spi in delete.spis:
                self._drop_child(int.from_bytes(spi, "big"), now, by_out=True)
        self._drop_unanswered_deletes(now)

    def _drop_child(self: IkeSa, spi: int, now: float, *, by_out: bool) -> None:
        child = next((c for c in self.children
                      if (c.spi_out if by_out else c.spi_in) == spi), None)
        if child is not None:
            self._remove_child(child, now)

    def _remove_child(self: IkeSa, child: ChildSa, now: float, *, by_peer: bool = False) -> None:
        """Forget ``child`` and report it; a successor that waited for its deletion may now
        send (§2.8: the rekey responder switches to the new SA when the old one goes)."""
        if child not in self.children:
            return
        self.children.remove(child)
        self._event(events.ChildSaDeleted, now, child=child.config.name, reqid=child.reqid,
                    spi_in=child.spi_in, spi_out=child.spi_out, by_peer=by_peer,
                    rekeyed=child.replaced_by is not None or child.state == "redundant")
        for other in self.children:
            if other.replaces is not child:
                continue
            other.replaces = None
            if not other.outbound_ready and other.state not in ("deleting", "redundant"):
                other.outbound_ready = True
                self._event(events.ChildSaOutboundReady, now, child=other.config.name,
                            reqid=other.reqid, spi_in=other.spi_in, spi_out=other.spi_out,
                            outbound=other.outbound)

    def _drop_unanswered_deletes(self: IkeSa, now: float) -> None:
        """Child SAs we asked to delete are gone even if the peer did not list them."""
        for spi in list(self._deleting):
            self._drop_child(spi, now, by_out=False)
        self._deleting.clear()
