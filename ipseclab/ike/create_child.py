"""The CREATE_CHILD_SA exchange (RFC 7296 §1.3): new child SAs, child SA rekeys and IKE SA
rekeys, with their collisions. A mixin of :class:`ipseclab.ike.ike_sa.IkeSa`; its table
names these handlers.

    new child SA     --> HDR, SK {SA, Ni, [KEi], TSi, TSr}                  (§1.3.1)
    child SA rekey   --> HDR, SK {N(REKEY_SA), SA, Ni, [KEi], TSi, TSr}      (§1.3.3)
    IKE SA rekey     --> HDR, SK {SA, Ni, KEi}                               (§1.3.2)
                     <-- HDR, SK {SA, Nr, [KEr], [TSi, TSr]}

Rekeying is make-before-break (§2.8): the new SA is reported before the old one is deleted,
and the rekey responder waits for that delete before it sends on the new child SA. When both
sides rekey the same SA at once (§2.8.1, §2.8.2), the exchange with the lowest of the four
nonces made the redundant SA, which the side that made it deletes. An IKE SA rekey makes a
new :class:`IkeSa` (:meth:`CreateChildExchange._spawn`, §2.18) that adopts the child SAs.
A refused request leaves the IKE SA as it was (§2.21.3); a refused rekey is tried again
after :data:`RETRY_REKEY` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from ipseclab.crypto import kdf
from ipseclab.crypto.dh import DhPrivate
from ipseclab.crypto.proposals import Proposal
from ipseclab.errors import InvalidKeyShare
from ipseclab.ike import events, negotiation
from ipseclab.ike.child import ChildRequest, ChildSa
from ipseclab.ike.config import ChildConfig
from ipseclab.ike.constants import ExchangeType, NotifyType, ProtocolId
from ipseclab.ike.message import Message
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import Delete, KeyExchange, Nonce, Notify, SecurityAssociation, TSi, TSr
from ipseclab.ike.sa_common import State
from ipseclab.ike.sa_common import find_payload as _find
from ipseclab.ike.sa_common import notify_name as _notify_name
from ipseclab.ipsec.selectors import narrow as _narrow

if TYPE_CHECKING:
    from ipseclab.ike.ike_sa import IkeSa

__all__ = ["RETRY_REKEY", "CreateChildExchange", "IkeRekeyRequest"]

_CHILD, _INFO = ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL
RETRY_REKEY = 10.0  # seconds before a refused rekey is tried again (TEMPORARY_FAILURE)


@dataclass
class IkeRekeyRequest:
    """Our CREATE_CHILD_SA request that rekeys this IKE SA (§1.3.2); ``collision`` is the IKE
    SA we made as responder to the peer's simultaneous rekey (§2.8.2)."""

    spi: bytes
    ni: bytes
    dh: DhPrivate
    retries: int = 0
    collision: IkeSa | None = None


class CreateChildExchange:
    """CREATE_CHILD_SA for both roles; mixed into :class:`IkeSa` (which holds the state)."""

    # -- CREATE_CHILD_SA, initiator (§1.3.1, §1.3.3) ------------------------------------------

    def create_child(self: IkeSa, config: ChildConfig, now: float, *, old: ChildSa | None = None,
                     group_id: int | None = None, retries: int = 0) -> bool:
        """Ask for a new child SA of ``config`` or, with ``old``, a rekey of ``old``.

        SA(ESP proposals with our new inbound SPI), Ni, [KEi when the proposals name a DH
        group: PFS], TSi, TSr, [N(REKEY_SA) with the old inbound SPI], [N(USE_TRANSPORT_MODE)].
        False if this IKE SA cannot start one now (not established, being replaced).
        """
        if self.state is not State.ESTABLISHED or self._replaced():
            return False
        if old is not None:
            if old not in self.children or not self._may_rekey(old):
                return False
            old.state = "rekeying"
            local_ts, remote_ts, mode = old.local_ts, old.remote_ts, old.mode
        else:
            local_ts = config.selectors("local", self._dynamic("local"))
            remote_ts = config.selectors("remote", self._dynamic("remote"))
            mode = config.mode
        proposals = config.proposals
        groups = [g for p in proposals for g in p.dh]
        dh = None
        if groups:
            group = next((g for g in groups if g.iana_id == group_id), groups[0])
            dh = negotiation.generate_dh(group, self.engine.rng)
        request = ChildRequest(config, self.engine.new_child_spi(), self.engine.random(32), dh,
                               local_ts, remote_ts, old, retries)
        inner: list[Payload] = []
        if old is not None:
            inner.append(Notify(NotifyType.REKEY_SA, b"", config.protocol_id,
                                old.spi_in.to_bytes(4, "big")))
        if mode == "transport":
            inner.append(Notify(NotifyType.USE_TRANSPORT_MODE))
        inner += [negotiation.sa_payload_for(proposals, config.protocol_id,
                                             request.spi_in.to_bytes(4, "big")),
                  Nonce(request.ni)]
        if dh is not None:
            inner.append(KeyExchange(dh.group.iana_id, dh.public_bytes()))
        inner += [TSi(negotiation.selectors_to_wire(local_ts)),
                  TSr(negotiation.selectors_to_wire(remote_ts))]
        self._child_requests.append(request)
        self.request(_CHILD, inner, now, partial(self._on_child_response, request))
        return True

    def _on_create_child_response(self: IkeSa, message: Message, inner: list[Payload],
                                  now: float) -> None:
        pending = self._pending
        if pending is None or pending.on_response is None:
            self._request_done(now)
            return
        pending.on_response(message, inner, now)
        self._reauth_check(now)

    def _on_child_response(self: IkeSa, request: ChildRequest, message: Message,
                           inner: list[Payload], now: float) -> None:
        self._request_done(now)
        if request in self._child_requests:
            self._child_requests.remove(request)
        home = self._home()  # the child SAs may have moved to a rekeyed IKE SA meanwhile
        config, old = request.config, request.old
        notifies = [p for p in inner if isinstance(p, Notify)]
        errors = [n for n in notifies if n.is_error]
        if errors:
            self._child_request_refused(request, errors[0], now)
            return
        sa, nonce, ke = (_find(inner, SecurityAssociation), _find(inner, Nonce),
                         _find(inner, KeyExchange))
        tsi, tsr = _find(inner, TSi), _find(inner, TSr)
        if sa is None or nonce is None or tsi is None or tsr is None:
            self._child_request_refused(request, Notify(NotifyType.INVALID_SYNTAX), now)
            return
        choice = negotiation.accept_choice(config.proposals, sa, config.protocol_id)
        local_ts = negotiation.selectors_from_wire(tsi.selectors)
        remote_ts = negotiation.selectors_from_wire(tsr.selectors)
        problem: tuple[int, str] | None = None
        g_ir = None
        if choice is None or len(choice[0].spi) != 4 or int.from_bytes(choice[0].spi,
                                                                        "big") < 256:
            problem = (NotifyType.NO_PROPOSAL_CHOSEN, "the responder chose what we did not offer")
        elif (not local_ts or not remote_ts
              or _narrow(local_ts, request.local_ts) != local_ts
              or _narrow(remote_ts, request.remote_ts) != remote_ts):
            problem = (NotifyType.TS_UNACCEPTABLE, "the responder's selectors are not ours")
        elif choice[1].dh:
            dh = request.dh
            if dh is None or ke is None or ke.group != dh.group.iana_id \
                    or choice[1].dh[0] != dh.group:
                problem = (NotifyType.INVALID_KE_PAYLOAD, "the responder's KE does not match")
            else:
                try:
                    g_ir = dh.exchange(ke.data)
                except InvalidKeyShare as error:
                    problem = (NotifyType.INVALID_SYNTAX, f"the responder's KE refused: {error}")
        if problem is not None:
            home._child_failed_after_auth_spi(config, request.spi_in, problem[0], problem[1],
                                              now)
            self._child_rekey_over(request, now)
            return
        assert choice is not None
        transport = any(n.notify_type == NotifyType.USE_TRANSPORT_MODE for n in notifies)
        child = self._make_child(config, choice[1], request.spi_in,
                                 int.from_bytes(choice[0].spi, "big"),
                                 "transport" if transport else "tunnel", local_ts, remote_ts,
                                 ni=request.ni, nr=nonce.data, g_ir=g_ir, initiated=True,
                                 reqid=old.reqid if old is not None else None, now=now)
        if child is None:
            self._child_rekey_over(request, now)
            return
        if old is None:
            home._add_child(child, now)
            return
        if old not in home.children:
            # §2.25.1: the peer deleted the old child SA meanwhile; the new one is unwanted.
            home._child_failed_after_auth_spi(config, child.spi_in,
                                              NotifyType.CHILD_SA_NOT_FOUND,
                                              "the child SA was deleted during its rekey", now)
            return
        child.replaces = old
        collision = request.collision
        if collision is not None and negotiation.collision_lost(child.nonces,
                                                                collision.nonces):
            # §2.8.1: our SA has the lowest nonce: it is redundant and ours to delete; the
            # peer's SA replaces the old one, which the peer deletes.
            child.outbound_ready = False
            child.state = "redundant"
            old.state, old.replaced_by = "rekeyed", collision
            home._add_child(child, now)
            home._deleting.add(child.spi_in)
            home.request(_INFO, [Delete.child_sas(config.protocol_id,
                                                  [child.spi_in.to_bytes(4, "big")])], now)
            return
        if collision is not None:
            # We won: the peer deletes its SA, which must never carry our traffic.
            collision.replaces, collision.state = None, "redundant"
            collision.rekey_at = None
        old.state, old.replaced_by = "rekeyed", child
        home._add_child(child, now)
        home._deleting.add(old.spi_in)
        home.request(_INFO, [Delete.child_sas(config.protocol_id,
                                              [old.spi_in.to_bytes(4, "big")])], now)

    def _child_rekey_over(self: IkeSa, request: ChildRequest, now: float) -> None:
        """Our rekey of ``request.old`` failed: keep the old SA and try again later."""
        old = request.old
        if old is None or old.state != "rekeying":
            return
        if request.collision is not None and request.collision in self._home().children:
            old.state, old.replaced_by = "rekeyed", request.collision  # the peer's rekey won
            return
        old.state = "installed"
        old.rekey_at = now + RETRY_REKEY + negotiation.jitter(self.engine.rng, RETRY_REKEY)

    def _child_request_refused(self: IkeSa, request: ChildRequest, notify: Notify,
                               now: float) -> None:
        """An error notify answered our CREATE_CHILD_SA: the IKE SA stays (§2.21.3)."""
        config, old = request.config, request.old
        if notify.notify_type == NotifyType.INVALID_KE_PAYLOAD and request.retries < 2:
            try:
                group = int(notify.accepted_group())
            except MalformedMessage:
                group = 0
            offered = {g.iana_id for p in config.proposals for g in p.dh}
            current = request.dh.group.iana_id if request.dh is not None else None
            if group in offered and group != current:
                if old is not None and old.state == "rekeying" and request.collision is None:
                    old.state = "installed"
                    if self.create_child(config, now, old=old, group_id=group,
                                         retries=request.retries + 1):
                        return
                elif old is None and self.create_child(config, now, group_id=group,
                                                       retries=request.retries + 1):
                    return
        home = self._home()
        if (notify.notify_type == NotifyType.CHILD_SA_NOT_FOUND and old is not None
                and old in home.children):
            home._remove_child(old, now)  # the peer has no such child SA (§2.25.1)
        else:
            self._child_rekey_over(request, now)
        home._event(events.ChildSaFailed, now, child=config.name, notify=notify.notify_type,
                    reason=f"responder answered {_notify_name(notify.notify_type)}")

    # -- CREATE_CHILD_SA, responder (§1.3, §2.8, §2.25) ------------------------------------------

    def _refuse_create_child(self: IkeSa, message: Message, inner: list[Payload],
                             now: float) -> None:
        """§2.25: we are deleting this IKE SA; try again later (elsewhere)."""
        self._respond(message, [Notify(NotifyType.TEMPORARY_FAILURE)])

    def _on_create_child_request(self: IkeSa, message: Message, inner: list[Payload],
                                 now: float) -> None:
        sa = _find(inner, SecurityAssociation)
        nonce, ke = _find(inner, Nonce), _find(inner, KeyExchange)
        if sa is None or nonce is None:
            self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])
            return
        if any(p.protocol_id == ProtocolId.IKE for p in sa.proposals):
            self._on_ike_rekey_request(message, sa, nonce, ke, now)
            return
        if self._replaced():
            self._respond(message, [Notify(NotifyType.TEMPORARY_FAILURE)])
            return
        notifies = [p for p in inner if isinstance(p, Notify)]
        rekey = [n for n in notifies if n.notify_type == NotifyType.REKEY_SA]
        old = None
        if rekey:
            spi = int.from_bytes(rekey[0].spi, "big") if len(rekey[0].spi) == 4 else -1
            old = next((c for c in self.children if c.spi_out == spi), None)
            if old is None:
                self._respond(message, [Notify(NotifyType.CHILD_SA_NOT_FOUND, b"",
                                               rekey[0].protocol_id, rekey[0].spi)])
                return
            if old.state in ("rekeyed", "deleting", "redundant") or old.replaced_by:
                # §2.25.1: we are closing it (or replaced it already).
                self._respond(message, [Notify(NotifyType.TEMPORARY_FAILURE)])
                return
        choice = self._choose_child(inner, notifies, pfs_group=ke.group if ke else None,
                                    only=old.config if old else None, ike_auth=False)
        if isinstance(choice, int):
            self._respond(message, [Notify(choice)])
            self._event(events.ChildSaFailed, now, notify=choice,
                        reason=f"we answered {_notify_name(choice)}",
                        **self._child_refusal(inner, only=old.config if old else None,
                                              ike_auth=False))
            return
        config, wire, proposal, local_ts, remote_ts, mode = choice
        g_ir = None
        reply_ke: list[Payload] = []
        if proposal.dh:
            group = proposal.dh[0]
            if ke is None or ke.group != group.iana_id:
                self._respond(message, [Notify.invalid_ke_payload(group.iana_id)])
                return
            dh = negotiation.generate_dh(group, self.engine.rng)
            try:
                g_ir = dh.exchange(ke.data)
            except InvalidKeyShare:
                self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])  # RFC 6989
                return
            reply_ke.append(KeyExchange(group.iana_id, dh.public_bytes()))
        spi_in = self.engine.new_child_spi()
        nr = self.engine.random(32)
        reply = self._child_answer(wire, proposal, spi_in, mode, local_ts, remote_ts,
                                   [Nonce(nr), *reply_ke])
        child = self._make_child(config, proposal, spi_in, int.from_bytes(wire.spi, "big"),
                                 mode, local_ts, remote_ts, ni=nonce.data, nr=nr, g_ir=g_ir,
                                 initiated=False, reqid=old.reqid if old else None, now=now)
        if child is None:
            self._respond(message, [Notify(NotifyType.NO_PROPOSAL_CHOSEN)])
            return
        self._respond(message, reply)
        if old is None:
            self._add_child(child, now)
            return
        # §2.8: keep sending on the old SA until the initiator deletes it.
        child.replaces, child.outbound_ready = old, False
        if old.state == "rekeying":
            ours = next((r for r in self._child_requests if r.old is old), None)
            if ours is not None and self._cancel_queued(ours):
                old.state = "installed"
            elif ours is not None:
                ours.collision = child  # §2.8.1: decided when our response comes
        if old.state == "installed":
            old.replaced_by, old.rekey_at = child, None
        self._add_child(child, now)

    def _cancel_queued(self: IkeSa, request: ChildRequest) -> bool:
        """Take our not yet sent request off the queue; True if it was there."""
        for entry in list(self._queue):
            handler = entry[2]
            if isinstance(handler, partial) and handler.args and handler.args[0] is request:
                self._queue.remove(entry)
                if request in self._child_requests:
                    self._child_requests.remove(request)
                return True
        return False

    def _drop_queue(self: IkeSa, now: float) -> None:
        """Forget queued requests (the IKE SA goes); rekeys waiting there are undone."""
        for _, _, handler in self._queue:
            if isinstance(handler, partial) and handler.args:
                request = handler.args[0]
                if (isinstance(request, ChildRequest) and request.old is not None
                        and request.old.state == "rekeying"):
                    request.old.state = "installed"
                    request.old.rekey_at = now
        self._queue.clear()
        self._child_requests.clear()
        self._ike_rekey = None

    # -- IKE SA rekey (§1.3.2, §2.18) ----------------------------------------------------------

    def rekey(self: IkeSa, now: float, group_id: int | None = None, retries: int = 0) -> bool:
        """Rekey this IKE SA: CREATE_CHILD_SA with SA(IKE proposals, our new SPI), Ni, KEi."""
        config = self.config
        if (config is None or self.state is not State.ESTABLISHED or self._replaced()
                or self._ike_rekey is not None):
            return False
        groups = [g for p in config.ike_proposals for g in p.dh]
        group = next((g for g in groups if g.iana_id == group_id), groups[0])
        dh = negotiation.generate_dh(group, self.engine.rng)
        request = IkeRekeyRequest(self.engine._new_ike_spi(), self.engine.random(32), dh, retries)
        self._ike_rekey = request
        inner: list[Payload] = [
            negotiation.sa_payload_for(config.ike_proposals, ProtocolId.IKE, request.spi),
            Nonce(request.ni),
            KeyExchange(group.iana_id, dh.public_bytes()),
        ]
        self.request(_CHILD, inner, now, partial(self._on_ike_rekey_response, request))
        return True

    def _on_ike_rekey_response(self: IkeSa, request: IkeRekeyRequest, message: Message,
                               inner: list[Payload], now: float) -> None:
        config = self.config
        assert config is not None
        self._pending = None
        self._ike_rekey = None
        errors = [n for n in inner if isinstance(n, Notify) and n.is_error]
        sa, nonce, ke = (_find(inner, SecurityAssociation), _find(inner, Nonce),
                         _find(inner, KeyExchange))
        problem: tuple[int, str] | None = None
        if errors:
            notify = errors[0]
            if notify.notify_type == NotifyType.INVALID_KE_PAYLOAD and request.retries < 2:
                try:
                    group = int(notify.accepted_group())
                except MalformedMessage:
                    group = 0
                offered = {g.iana_id for p in config.ike_proposals for g in p.dh}
                if group in offered and group != request.dh.group.iana_id:
                    self.rekey(now, group, request.retries + 1)
                    return
            problem = (notify.notify_type,
                       f"responder answered {_notify_name(notify.notify_type)}")
        elif sa is None or nonce is None or ke is None:
            problem = (NotifyType.INVALID_SYNTAX, "IKE rekey response lacks SA, Nr or KEr")
        choice = None
        g_ir = b""
        if problem is None:
            choice = negotiation.accept_choice(config.ike_proposals, sa, ProtocolId.IKE)
            if choice is None or len(choice[0].spi) != 8 or choice[0].spi == bytes(8):
                problem = (NotifyType.NO_PROPOSAL_CHOSEN, "the responder chose badly")
            elif ke.group != request.dh.group.iana_id or choice[1].dh[0] != request.dh.group:
                problem = (NotifyType.INVALID_KE_PAYLOAD, "the responder's KE group differs")
            else:
                try:
                    g_ir = request.dh.exchange(ke.data)
                except InvalidKeyShare as error:
                    problem = (NotifyType.INVALID_SYNTAX, f"the responder's KE refused: {error}")
        if problem is not None:
            self._request_done(now)
            if self.state is State.ESTABLISHED and not self._replaced():
                self.rekey_at = now + RETRY_REKEY + negotiation.jitter(self.engine.rng,
                                                                        RETRY_REKEY)
            self._event(events.IkeSaRekeyFailed, now, notify=problem[0], reason=problem[1])
            return
        assert choice is not None and nonce is not None
        new = self._spawn(initiator=True, spi_i=request.spi, spi_r=choice[0].spi,
                          proposal=choice[1], g_ir=g_ir, ni=request.ni, nr=nonce.data, now=now,
                          dh=request.dh)
        collision = request.collision
        if collision is not None and collision.state is not State.ESTABLISHED:
            collision = None
        if collision is not None and negotiation.collision_lost((new.ni, new.nr),
                                                                (collision.ni, collision.nr)):
            # §2.8.2: ours is the redundant IKE SA; the peer deletes the old one.
            self._request_done(now)
            new._delete_reason = "redundant after an IKE SA rekey collision"
            new._rekeyed_to = collision  # so that its deletion is reported as rekeyed
            new.delete(now)
            return
        new._adopt_children(self, now)
        if collision is not None:
            new._adopt_children(collision, now)
            collision._delete_reason = "redundant after an IKE SA rekey collision"
        self._rekeyed_to = new
        self._delete_reason = "rekeyed"
        self.delete(now)

    def _on_ike_rekey_request(self: IkeSa, message: Message, sa: SecurityAssociation, nonce: Nonce,
                              ke: KeyExchange | None, now: float) -> None:
        config = self.config
        assert config is not None
        if self._replaced():
            self._respond(message, [Notify(NotifyType.TEMPORARY_FAILURE)])  # §2.25.2
            return
        if ke is None:
            self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])
            return
        theirs = negotiation.read_proposals(sa, ProtocolId.IKE)
        choice = negotiation.choose_proposal(config.ike_proposals, theirs, ke.group)
        if choice is None or len(choice[0].spi) != 8 or choice[0].spi == bytes(8):
            self._respond(message, [Notify(NotifyType.NO_PROPOSAL_CHOSEN)])
            return
        wire, proposal = choice
        group = proposal.dh[0]
        if ke.group != group.iana_id:
            self._respond(message, [Notify.invalid_ke_payload(group.iana_id)])
            return
        dh = negotiation.generate_dh(group, self.engine.rng)
        try:
            g_ir = dh.exchange(ke.data)
        except InvalidKeyShare:
            self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])
            return
        spi = self.engine._new_ike_spi()
        nr = self.engine.random(32)
        self._respond(message, [
            negotiation.sa_payload_for([proposal], ProtocolId.IKE, spi, [wire.number]),
            Nonce(nr), KeyExchange(group.iana_id, dh.public_bytes())])
        new = self._spawn(initiator=False, spi_i=wire.spi, spi_r=spi, proposal=proposal,
                          g_ir=g_ir, ni=nonce.data, nr=nr, now=now, dh=dh)
        ours = self._ike_rekey
        if ours is not None:
            if self._cancel_queued_ike(ours):
                self._ike_rekey = None
            else:
                ours.collision = new  # §2.8.2: decided when our response comes
        self._successor = new
        new._adopt_children(self, now)

    def _cancel_queued_ike(self: IkeSa, request: IkeRekeyRequest) -> bool:
        for entry in list(self._queue):
            handler = entry[2]
            if isinstance(handler, partial) and handler.args and handler.args[0] is request:
                self._queue.remove(entry)
                return True
        return False

    def _spawn(self: IkeSa, *, initiator: bool, spi_i: bytes, spi_r: bytes, proposal: Proposal,
               g_ir: bytes, ni: bytes, nr: bytes, now: float, dh: DhPrivate) -> IkeSa:
        """The IKE SA a rekey makes (§2.18): the rekey's initiator is its initiator, its
        message IDs start at 0, SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the old
        IKE SA's PRF, as the exchange belongs to the old IKE SA."""
        from ipseclab.ike.ike_sa import IkeSa

        new = IkeSa(self.engine, initiator=initiator, local=self.local, remote=self.remote,
                    spi_i=spi_i, spi_r=spi_r, config=self.config, candidates=self.candidates)
        new.ni, new.nr, new.dh = ni, nr, dh
        new.nat_detected = self.nat_detected
        new.local_id, new.remote_id = self.local_id, self.remote_id
        new.peer_hashes, new.peer_certreq = self.peer_hashes, self.peer_certreq
        new.peer_fragmentation = self.peer_fragmentation
        new.peer_certificate, new.dns_servers = self.peer_certificate, list(self.dns_servers)
        new.virtual_ips = list(self.virtual_ips)
        new.remote_virtual_ips = list(self.remote_virtual_ips)
        self.engine._move_leases(self, new)
        new.created = now
        seed = kdf.skeyseed_rekey(self.suite.prf, self.sk_d, g_ir, ni, nr)  # type: ignore
        new._derive(proposal, g_ir, skeyseed=seed)
        self.engine._sas[new.local_spi] = new
        new._established(now, old=self)
        return new

    def _adopt_children(self: IkeSa, other: IkeSa, now: float) -> None:
        """Take over the child SAs of ``other`` (an IKE SA this one replaces, §2.18); a child
        SA request still queued there is made again here."""
        self.children += other.children
        other.children = []
        queued = [h.args[0] for _, _, h in other._queue
                  if isinstance(h, partial) and h.args and isinstance(h.args[0], ChildRequest)]
        for request in queued:
            other._cancel_queued(request)
            if request.old is not None and request.old.state == "rekeying":
                request.old.state = "installed"
            self.create_child(request.config, now, old=request.old)
