"""One IKE SA: its state, its keys, its message IDs and the exchanges it runs (RFC 7296).

Start with the table :data:`TRANSITIONS`: it is the protocol at a glance, in which state a
message of which exchange is accepted and which method handles it. The handlers live with
their exchange, one module each, mixed into :class:`IkeSa`:

    IKE_SA_INIT      (§1.2)        here: :meth:`IkeSa.start`, ``_on_init_response``; the
                                   responder's half is in :mod:`.engine` (no IKE SA before it)
    IKE_AUTH         (§1.2, §2.15) :mod:`.ike_auth`: IDs, AUTH (PSK, signatures), CP
    CREATE_CHILD_SA  (§1.3)        :mod:`.create_child`: new child SA, child SA and IKE SA
                                   rekeys, rekey collisions (§2.8)
    INFORMATIONAL    (§1.4)        :mod:`.informational`: Delete, dead peer detection

What IKE_AUTH and CREATE_CHILD_SA share to make child SAs (offering, choosing and
narrowing, KEYMAT, timers, events: ``_child_offer``, ``_choose_child``, ``_make_child``,
``_add_child``) is the mixin :mod:`.child_sas`. What every exchange needs stays here: sending
and retransmitting (``request``, ``_respond``), receiving and dispatching (``receive``),
timers, the SK_* keys (``_derive``). The states are :class:`ipseclab.ike.sa_common.State`.

    initiator: INIT_SENT --IKE_SA_INIT resp--> AUTH_SENT --IKE_AUTH resp--> ESTABLISHED
    responder: (IKE_SA_INIT req, in the engine) INIT_DONE --IKE_AUTH req--> ESTABLISHED
    both:      ESTABLISHED --INFORMATIONAL--> ESTABLISHED | DELETED
               ESTABLISHED --CREATE_CHILD_SA--> ESTABLISHED (new child SA, child SA rekey)
               ESTABLISHED --CREATE_CHILD_SA(SA of IKE)--> a new IKE SA; the old is deleted

Timers (``rekey_time`` and ``reauth_time`` minus up to 10% of them, strongSwan-style, and the
hard ``life_time``) start rekeys, reauthentications (:mod:`.reauth`: a new IKE SA from
scratch) and deletes by themselves.

Reliability (§2.1): only the requester retransmits; a request is resent after 1, 2, 4, 8 and
16 seconds (``retransmit_base``, doubling) and the SA is given up after the last timeout. A
responder keeps its last response and sends it again when the same request comes back (§2.1,
§2.2). Window size is 1: one request of ours outstanding at a time, queued otherwise.

Errors (§2.21): a message whose ICV fails is dropped without an answer; a request that is
malformed after decryption gets INVALID_SYNTAX; nothing a peer sends raises out of here.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, SupportsIndex

from ipseclab.crypto import kdf
from ipseclab.crypto.dh import DhPrivate
from ipseclab.crypto.proposals import Proposal
from ipseclab.errors import AuthenticationFailed as IcvFailed
from ipseclab.errors import InvalidKeyShare
from ipseclab.ike import events, negotiation
from ipseclab.ike.child import ChildRequest, ChildSa
from ipseclab.ike.child_sas import ChildSaMaking
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import ExchangeType, HeaderFlag, NotifyType, ProtocolId
from ipseclab.ike.create_child import CreateChildExchange, IkeRekeyRequest
from ipseclab.ike.fragments import Reassembly, max_message_size
from ipseclab.ike.ike_auth import IkeAuthExchange, read_sa_init_extras, sa_init_extras
from ipseclab.ike.informational import InformationalExchange
from ipseclab.ike.keys import IkeSuite, ike_sa_keys
from ipseclab.ike.message import Message, parse_payload_chain
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import EncryptedFragment, KeyExchange, Nonce, Notify, SecurityAssociation
from ipseclab.ike.reauth import Reauthentication
from ipseclab.ike.sa_common import State
from ipseclab.ike.sa_common import notify_name as _notify_name
from ipseclab.ike.sk import SkCipher
from ipseclab.ipsec.selectors import TrafficSelector

if TYPE_CHECKING:
    from ipseclab.ike.engine import IkeEngine

Address = tuple[str, int]

__all__ = ["TRANSITIONS", "IkeSa", "State"]


_I, _R = "initiator", "responder"
_INIT, _AUTH = ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH
_CHILD, _INFO = ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL

# (role, state, exchange type, message is a response) -> handler method
TRANSITIONS: dict[tuple[str, State, int, bool], str] = {
    (_I, State.INIT_SENT, _INIT, True): "_on_init_response",
    (_I, State.AUTH_SENT, _AUTH, True): "_on_auth_response",
    (_R, State.INIT_DONE, _AUTH, False): "_on_auth_request",
    **{(role, state, _INFO, False): "_on_informational_request"
       for role in (_I, _R) for state in (State.ESTABLISHED, State.DELETING)},
    **{(role, state, _INFO, True): "_on_informational_response"
       for role in (_I, _R) for state in (State.ESTABLISHED, State.DELETING)},
    **{(role, State.ESTABLISHED, _CHILD, False): "_on_create_child_request"
       for role in (_I, _R)},
    **{(role, State.ESTABLISHED, _CHILD, True): "_on_create_child_response"
       for role in (_I, _R)},
    **{(role, State.DELETING, _CHILD, False): "_refuse_create_child" for role in (_I, _R)},
}

class ChildList(list):
    """An IKE SA's child SAs: a list that tells the engine of each child SA it gains or
    loses, so that the engine's indexes (by inbound SPI, reqid, selectors; timers) follow
    without scanning every IKE SA. The one hook for them, whichever exchange changes it."""

    __slots__ = ("_sa",)

    def __init__(self, sa: IkeSa) -> None:
        super().__init__()
        self._sa = sa

    def _added(self, children: Sequence[ChildSa]) -> None:
        for child in children:
            self._sa.engine._child_added(self._sa, child)

    def _removed(self, children: Sequence[ChildSa]) -> None:
        for child in children:
            self._sa.engine._child_removed(self._sa, child)

    def append(self, child: ChildSa) -> None:
        super().append(child)
        self._added([child])

    def insert(self, index: SupportsIndex, child: ChildSa) -> None:
        super().insert(index, child)
        self._added([child])

    def extend(self, children: Iterable[ChildSa]) -> None:
        children = list(children)
        super().extend(children)
        self._added(children)

    def __iadd__(self, children: Iterable[ChildSa]) -> ChildList:  # type: ignore[override]
        self.extend(children)
        return self

    def remove(self, child: ChildSa) -> None:
        gone = self[self.index(child)]
        super().remove(child)
        self._removed([gone])

    def pop(self, index: SupportsIndex = -1) -> ChildSa:
        child = super().pop(index)
        self._removed([child])
        return child

    def clear(self) -> None:
        gone = list(self)
        super().clear()
        self._removed(gone)

    def __setitem__(self, index, value) -> None:  # type: ignore[no-untyped-def]
        before = list(self)
        super().__setitem__(index, value)
        self._changed(before)

    def __delitem__(self, index) -> None:  # type: ignore[no-untyped-def]
        before = list(self)
        super().__delitem__(index)
        self._changed(before)

    def __imul__(self, n: SupportsIndex) -> ChildList:  # type: ignore[override]
        before = list(self)
        super().__imul__(n)
        self._changed(before)
        return self

    def _changed(self, before: list[ChildSa]) -> None:
        self._removed(before)
        self._added(list(self))


@dataclass
class _Pending:
    """Our outstanding request: kept for retransmission until its response arrives."""

    exchange: int
    message_id: int
    data: bytes
    sent_at: float
    tries: int = 0
    on_response: Callable[[Message, list[Payload], float], None] | None = None
    more: tuple[bytes, ...] = ()  # fragments 2..n when ``data`` is fragment 1 (RFC 7383)


class IkeSa(IkeAuthExchange, CreateChildExchange, InformationalExchange, Reauthentication,
            ChildSaMaking):
    """One IKE SA, either side. Built by :class:`ipseclab.ike.engine.IkeEngine`.

    The handlers of IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL live in their mixins
    (:mod:`.ike_auth`, :mod:`.create_child`, :mod:`.informational`), reauthentication in
    :mod:`.reauth`, the making of child SAs that IKE_AUTH and CREATE_CHILD_SA share in
    :mod:`.child_sas`; the rest is here."""

    def __init__(self, engine: IkeEngine, *, initiator: bool, local: Address, remote: Address,
                 spi_i: bytes, spi_r: bytes = bytes(8), config: IkeConfig | None = None,
                 candidates: Sequence[IkeConfig] = ()) -> None:
        self.engine = engine
        self.initiator = initiator
        self.role = _I if initiator else _R
        self.local = local
        self.remote = remote
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.config = config
        self.candidates = list(candidates) or ([config] if config else [])
        self.state = State.INIT_SENT if initiator else State.INIT_DONE
        self.suite: IkeSuite | None = None
        self.proposal: Proposal | None = None
        self.ni = b""
        self.nr = b""
        self.dh: DhPrivate | None = None
        self.sk_d = b""
        self.sk_pi = b""
        self.sk_pr = b""
        self.sk_in: SkCipher | None = None
        self.sk_out: SkCipher | None = None
        self.keys = None
        self.init_request = b""
        self.init_response = b""
        self.nat_detected = False
        self._children = ChildList(self)
        self._order = -1  # when it entered the engine's SA table (engine._SaTable)
        self._peer_keys: tuple = ()  # its keys in the engine's index of peers (_by_peer)
        self.child_config: ChildConfig | None = None
        self._child_spi = 0
        self._cookie = b""
        self._init_retries = 0
        self.next_request_id = 0  # the Message ID of our next request
        self.expected_request_id = 0  # the Message ID of the peer's next request
        self._pending: _Pending | None = None
        self._queue: deque[tuple[int, list[Payload], Callable | None]] = deque()
        self._last_response: tuple[int, bytes] | None = None
        self._last_response_more: tuple[bytes, ...] = ()  # its other fragments (RFC 7383)
        self.peer_fragmentation = False  # both announced IKEV2_FRAGMENTATION_SUPPORTED
        self.peer_childless = False  # the responder announced CHILDLESS_IKEV2_SUPPORTED
        self._after_auth: ChildConfig | None = None  # first child SA of a childless IKE SA
        self._reassembly = {False: Reassembly(engine.fragment_limits),  # requests
                            True: Reassembly(engine.fragment_limits)}  # responses
        self._deleting: set[int] = set()  # inbound SPIs of child SAs we asked to delete
        self.created = 0.0
        self.last_heard = 0.0
        self.expires: float | None = None
        self.remote_id = ""
        self.local_id = ""
        self.rekey_at: float | None = None  # when we rekey this IKE SA
        self.life_ends: float | None = None  # when we delete it if it was not rekeyed
        self.reauth_at: float | None = None  # when we reauthenticate it (§2.8.3)
        self._reauth_of: IkeSa | None = None  # the IKE SA this one reauthenticates
        self._reauth_by: IkeSa | None = None  # the IKE SA reauthenticating this one
        self._reauth_children: list[ChildConfig] = []  # to create once established
        self._child_requests: list[ChildRequest] = []  # ours, sent or queued
        self._ike_rekey: IkeRekeyRequest | None = None
        self._successor: IkeSa | None = None  # made by the peer's rekey of this IKE SA
        self._rekeyed_to: IkeSa | None = None  # made by our rekey of this IKE SA
        self._delete_reason = ""
        self._offered_ts: tuple[list[TrafficSelector], list[TrafficSelector]] = ([], [])
        self.peer_hashes: list[int] | None = None  # SIGNATURE_HASH_ALGORITHMS (RFC 7427)
        self.peer_certreq: list[bytes] | None = None  # CA key hashes of its CERTREQs
        self.peer_certificate = ""  # subject DN of the certificate the peer proved
        self.peer_auth_method = 0  # the AUTH method the peer proved itself with
        self.virtual_ips: list[str] = []  # ours, from the peer's CP(CFG_REPLY)
        self.remote_virtual_ips: list[str] = []  # leased by us to the peer
        self.dns_servers: list[str] = []

    # -- names and helpers -------------------------------------------------------------

    @property
    def children(self) -> ChildList:
        """Our child SAs, in the order they came; changes reach the engine's indexes."""
        return self._children

    @children.setter
    def children(self, children: list[ChildSa]) -> None:
        if children is not self._children:  # ``sa.children += more`` sets it to itself
            self._children.clear()
            self._children.extend(children)

    @property
    def name(self) -> str:
        """(SPIi, SPIr) in hex: how events and Wireshark name this IKE SA."""
        return self.spi_i.hex() + self.spi_r.hex()

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    def _event(self, event_cls: type[events.Event], now: float, **kw) -> None:
        self.engine._touch(self)  # what we report on may have changed our timers
        self.engine._events.append(event_cls(self.name, time=now, **kw))

    def _flags(self, response: bool) -> HeaderFlag:
        flags = HeaderFlag.I if self.initiator else HeaderFlag(0)
        return flags | HeaderFlag.R if response else flags

    def _transmit(self, data: bytes) -> None:
        self.engine._touch(self)  # a request sent starts a retransmission timer
        self.engine._out.append((data, self.local, self.remote))

    def _seal(self, header: Message, inner: list[Payload]) -> list[bytes]:
        """``inner`` encrypted into ``header``: one SK message, or SKF fragments when both
        sides support them, we may send them (``fragmentation = yes``) and the message is
        larger than a fragment may be (RFC 7383 §2.5)."""
        data = self.sk_out.seal(header, inner)  # type: ignore[union-attr]
        config = self.config
        if (len(data) <= self.engine.fragment_size - 52  # fits with any IP/UDP overhead
                or not self.peer_fragmentation or config is None
                or config.fragmentation not in ("yes", "force")):
            return [data]
        limit = max_message_size(self.engine.fragment_size, self.local, self.remote)
        if len(data) <= limit:
            return [data]
        return self.sk_out.seal_fragments(header, inner, limit)  # type: ignore[union-attr]

    # -- sending requests and responses (§2.1, §2.2) -------------------------------------

    def request(self, exchange: int, inner: list[Payload], now: float,
                on_response: Callable | None = None) -> None:
        """Send an encrypted request, or queue it while another one is outstanding."""
        if self._pending is not None:
            self._queue.append((exchange, inner, on_response))
            return
        message_id = self.next_request_id
        self.next_request_id += 1
        header = Message(self.spi_i, self.spi_r, exchange, self._flags(False), message_id)
        data, *more = self._seal(header, inner)
        self._pending = _Pending(exchange, message_id, data, now, on_response=on_response,
                                 more=tuple(more))
        for datagram in (data, *more):
            self._transmit(datagram)

    def _respond(self, request: Message, inner: list[Payload]) -> None:
        header = Message(self.spi_i, self.spi_r, request.exchange_type, self._flags(True),
                         request.message_id)
        data, *more = self._seal(header, inner)
        self._last_response = (request.message_id, data)
        self._last_response_more = tuple(more)
        self.expected_request_id = request.message_id + 1
        for datagram in (data, *more):
            self._transmit(datagram)

    def _request_done(self, now: float) -> None:
        self._pending = None
        if self._queue and self.state in (State.ESTABLISHED, State.DELETING):
            exchange, inner, handler = self._queue.popleft()
            self.request(exchange, inner, now, handler)

    # -- timers ----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        times = []
        if self._pending is not None:
            p = self._pending
            times.append(p.sent_at + self.engine.retransmit_base * 2 ** p.tries)
        if self.expires is not None:
            times.append(self.expires)
        times += [t for r in self._reassembly.values() if (t := r.expires()) is not None]
        dpd = self.config.dpd_delay if self.config else 0
        if dpd and self.state is State.ESTABLISHED and self._pending is None:
            times.append(self.last_heard + dpd)
        if self.state is State.ESTABLISHED:
            times += [t for t in (self.rekey_at, self.life_ends, self.reauth_at)
                      if t is not None]
            for child in self.children:
                if child.rekey_at is not None and self._may_rekey(child):
                    times.append(child.rekey_at)
                if child.expire_at is not None:
                    times.append(child.expire_at)
                if child.wait_ends is not None:
                    times.append(child.wait_ends)
        return min(times) if times else None

    def _may_rekey(self, child: ChildSa) -> bool:
        return child.state == "installed" and child.replaced_by is None

    def handle_timer(self, now: float) -> None:
        if self.expires is not None and now >= self.expires:
            self._delete(now, "half-open IKE SA timed out", notify_event=False)
            return
        p = self._pending
        if p is not None and now >= p.sent_at + self.engine.retransmit_base * 2 ** p.tries:
            if p.tries >= self.engine.retransmit_tries:
                self._event(events.PeerUnreachable, now, exchange=p.exchange,
                            message_id=p.message_id)
                self._delete(now, f"no response to {ExchangeType(p.exchange).name}"
                             f" after {p.tries} retransmissions")
                return
            p.tries += 1
            p.sent_at = now
            for datagram in (p.data, *p.more):  # all fragments again (RFC 7383 §2.6.1)
                self._transmit(datagram)
        for reassembly in self._reassembly.values():
            reassembly.expire(now)
        if self.state is not State.ESTABLISHED:
            return
        if self.life_ends is not None and now >= self.life_ends:
            self.life_ends = None
            self.delete(now)  # §2.8: an IKE SA past its lifetime that could not be rekeyed
            return
        if self.reauth_at is not None and now >= self.reauth_at:
            self.reauth_at = None
            self.reauthenticate(now)
            if self.state is not State.ESTABLISHED:
                return  # break-before-make: this one is being deleted
        if self.rekey_at is not None and now >= self.rekey_at:
            self.rekey_at = None
            if self._reauth_by is None:  # a reauthentication under way replaces it anyway
                self.rekey(now)
        for child in list(self.children):
            if child.wait_ends is not None and now >= child.wait_ends:
                self.engine._release_waiting([child.waits_for], now)
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = None
                if child.spi_in not in self._deleting:
                    self._request_child_delete([child], now)
                continue
            if child.rekey_at is not None and now >= child.rekey_at and self._may_rekey(child):
                child.rekey_at = None
                self.create_child(child.config, now, old=child)
        dpd = self.config.dpd_delay if self.config else 0
        if (dpd and self.state is State.ESTABLISHED and self._pending is None
                and now >= self.last_heard + dpd):
            self.check_liveness(now)

    def _delete(self, now: float, reason: str, *, by_peer: bool = False,
                notify_event: bool = True) -> None:
        """Forget this SA; report its child SAs and itself as deleted."""
        if self.state is State.DELETED:
            return
        was_established = self.state in (State.ESTABLISHED, State.DELETING)
        self.state = State.DELETED
        self._pending = None
        self._queue.clear()
        self._child_requests.clear()
        self._ike_rekey = None
        self.expires = None
        if was_established:
            gone = list(self.children)
            self.children.clear()
            for child in gone:
                # A child SA whose reqid lives on in another IKE SA was replaced (a
                # reauthentication): reported as rekeyed, its inbound SA may linger.
                self._event(events.ChildSaDeleted, now, child=child.config.name,
                            reqid=child.reqid, spi_in=child.spi_in, spi_out=child.spi_out,
                            by_peer=by_peer, rekeyed=self.engine._reqid_lives_on(child.reqid))
            self.engine._release_waiting(gone, now)
        rekeyed = self._replaced()
        if self._reauth_of is not None:
            self._reauth_failed(now)
        self.engine._release_leases(self)  # §2.19: the virtual IP goes back to its pool
        if notify_event:
            self._event(events.IkeSaDeleted, now, reason=self._delete_reason or reason,
                        by_peer=by_peer, rekeyed=rekeyed,
                        connection=self.config.name if self.config else "")
        self.engine._forget(self)

    def _replaced(self) -> bool:
        """A rekey made a new IKE SA for this one: no new exchanges here (§2.18)."""
        return self._rekeyed_to is not None or self._successor is not None

    def _home(self) -> IkeSa:
        """The IKE SA that holds the child SAs now: this one or the one that replaced it."""
        sa = self
        for _ in range(8):
            nxt = sa._rekeyed_to or sa._successor
            if nxt is None or nxt.state is State.DELETED:
                break
            sa = nxt
        return sa

    def _fail(self, now: float, notify: int, reason: str, *, by_peer: bool = False) -> None:
        self._event(events.NegotiationFailed, now, notify=notify, reason=reason,
                    by_peer=by_peer)
        self._delete(now, reason, by_peer=by_peer)

    # -- receiving -------------------------------------------------------------------------

    def receive(self, message: Message, data: bytes, src: Address, dst: Address,
                now: float) -> None:
        """Dispatch one message for this SA through :data:`TRANSITIONS`."""
        response = message.is_response
        if message.is_initiator == self.initiator:
            return  # a reflection of our own messages
        if response:
            p = self._pending
            if p is None or message.message_id != p.message_id:
                return  # late or unsolicited response (§2.1)
        else:
            if message.message_id == self.expected_request_id - 1 and self._last_response:
                # A retransmitted request (§2.1); of a fragmented one, only fragment 1
                # brings the response again (RFC 7383 §2.6.1).
                if self._last_response[0] == message.message_id and _fragment_number(
                        message) in (None, 1):
                    for datagram in (self._last_response[1], *self._last_response_more):
                        self._transmit(datagram)
                return
            if message.message_id != self.expected_request_id:
                return  # outside the window (§2.3): drop
        handler = TRANSITIONS.get((self.role, self.state, message.exchange_type, response))
        if handler is None:
            return
        if message.exchange_type == _INIT:
            if _fragment_number(message) is None:  # never fragmented (RFC 7383 §2.5)
                getattr(self, handler)(message, data, now)
            return
        try:
            if _fragment_number(message) is not None:
                inner = self._reassemble(message, data, now)
                if inner is None:
                    return  # more fragments to come
            else:
                inner = self.sk_in.open(data, message)  # type: ignore[union-attr]
        except IcvFailed:
            return  # §2.21.2: never answer a message that does not authenticate
        except MalformedMessage as error:
            if not response:
                self._respond(message, [Notify(error.notify, error.data)])
                if self.state is State.INIT_DONE:
                    self._fail(now, error.notify, f"malformed IKE_AUTH: {error}")
            return
        self.last_heard = now
        if not response and not self.initiator:
            self.remote, self.local = src, dst  # §2.23: follow the peer behind a NAT
        getattr(self, handler)(message, inner, now)

    def _reassemble(self, message: Message, data: bytes, now: float) -> list[Payload] | None:
        """Collect one SKF fragment (RFC 7383 §2.6): its ICV is checked before it is kept
        (:class:`IcvFailed` otherwise); the inner payloads once all have arrived, else None."""
        skf = message.payloads[-1]
        assert isinstance(skf, EncryptedFragment)
        chunk = self.sk_in.open_fragment(data, message)  # type: ignore[union-attr]
        done = self._reassembly[message.is_response].add(
            message.message_id, skf.fragment_number, skf.total_fragments, skf.first_inner,
            chunk, now)
        if done is None:
            return None
        return parse_payload_chain(*done)

    # -- IKE_SA_INIT, initiator (§1.2) -----------------------------------------------------

    def start(self, child: ChildConfig | None, now: float, group_id: int | None = None) -> None:
        """Send (or resend, after COOKIE or INVALID_KE_PAYLOAD) the IKE_SA_INIT request."""
        config = self.config
        assert config is not None
        self.child_config = child
        self.created = self.created or now
        proposals = config.ike_proposals
        groups = [g for p in proposals for g in p.dh]
        group = next((g for g in groups if g.iana_id == group_id), groups[0])
        self.dh = negotiation.generate_dh(group, self.engine.rng)
        if not self.ni:
            self.ni = self.engine.random(32)
        payloads: list[Payload] = []
        if self._cookie:
            payloads.append(Notify(NotifyType.COOKIE, self._cookie))  # first, §2.6
        payloads += [
            negotiation.sa_payload_for(proposals, ProtocolId.IKE),
            KeyExchange(group.iana_id, self.dh.public_bytes()),
            Nonce(self.ni),
            *self._natd_notifies(),
            *sa_init_extras([config], certreq=False),  # ours goes in IKE_AUTH (§3.7)
        ]
        if config.fragmentation != "no":
            payloads.append(Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))  # RFC 7383 §2.3
        message = Message(self.spi_i, bytes(8), _INIT, HeaderFlag.I, 0, payloads)
        self.init_request = message.to_bytes()
        self.next_request_id = 1
        self._pending = _Pending(_INIT, 0, self.init_request, now)
        self._transmit(self.init_request)

    def _natd_notifies(self) -> list[Notify]:
        spi_r = bytes(8) if self.initiator else self.spi_r  # §2.23: zero in the request
        # With encap = yes the source hash is of an address we do not have, so the peer
        # sees a NAT in front of us and both sides put ESP in UDP (what strongSwan does).
        source = ("0.0.0.0", 0) if self.config is not None and self.config.encap else self.local
        return [Notify(NotifyType.NAT_DETECTION_SOURCE_IP,
                       negotiation.natd_hash(self.spi_i, spi_r, *source)),
                Notify(NotifyType.NAT_DETECTION_DESTINATION_IP,
                       negotiation.natd_hash(self.spi_i, spi_r, *self.remote))]

    def _check_natd(self, message: Message, spi_r: bytes) -> bool:
        """True if a NAT sits between us (§2.23), or we claim one (encap = yes); False also
        when the peer sent no hashes."""
        sources = message.notifies(NotifyType.NAT_DETECTION_SOURCE_IP)
        dests = message.notifies(NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not sources or not dests:
            return False
        if self.config is not None and self.config.encap:
            return True
        ours = negotiation.natd_hash(self.spi_i, spi_r, *self.local)
        theirs = negotiation.natd_hash(self.spi_i, spi_r, *self.remote)
        return (all(n.data != ours for n in dests)
                or all(n.data != theirs for n in sources))

    def _on_init_response(self, message: Message, data: bytes, now: float) -> None:
        config = self.config
        assert config is not None
        cookie = message.notifies(NotifyType.COOKIE)
        if cookie and message.find(SecurityAssociation) is None:
            if self._init_retries >= 3 or not 1 <= len(cookie[0].data) <= 64:
                self._fail(now, NotifyType.COOKIE, "responder keeps asking for a cookie")
                return
            self._init_retries += 1
            self._cookie = cookie[0].data
            self.start(self.child_config, now, self.dh.group.iana_id)  # type: ignore[union-attr]
            return
        invalid_ke = message.notifies(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke:
            try:
                group = invalid_ke[0].accepted_group()
            except MalformedMessage:
                group = 0
            offered = {g.iana_id for p in config.ike_proposals for g in p.dh}
            if (group not in offered or group == self.dh.group.iana_id  # type: ignore[union-attr]
                    or self._init_retries >= 3):
                self._fail(now, NotifyType.INVALID_KE_PAYLOAD,
                           f"responder wants DH group {group}, which we cannot use",
                           by_peer=True)
                return
            self._init_retries += 1
            self.start(self.child_config, now, group)
            return
        errors = [n for n in message.notifies() if n.is_error]
        if errors:
            self._fail(now, errors[0].notify_type,
                       f"responder answered {_notify_name(errors[0].notify_type)}",
                       by_peer=True)
            return
        sa = message.find(SecurityAssociation)
        ke = message.find(KeyExchange)
        nonce = message.find(Nonce)
        if sa is None or ke is None or nonce is None or message.spi_r == bytes(8):
            self._fail(now, NotifyType.INVALID_SYNTAX, "IKE_SA_INIT response lacks SA/KE/Nr")
            return
        choice = negotiation.accept_choice(config.ike_proposals, sa, ProtocolId.IKE)
        if choice is None:
            self._fail(now, NotifyType.NO_PROPOSAL_CHOSEN,
                       "responder chose a proposal we did not offer")
            return
        proposal = choice[1]
        if ke.group != self.dh.group.iana_id or proposal.dh[0] != self.dh.group:  # type: ignore
            self._fail(now, NotifyType.INVALID_KE_PAYLOAD, "responder's KE group mismatch")
            return
        try:
            g_ir = self.dh.exchange(ke.data)  # type: ignore[union-attr]
        except InvalidKeyShare as error:
            self._fail(now, NotifyType.INVALID_SYNTAX, f"responder's KE refused: {error}")
            return
        self.spi_r = message.spi_r
        self.nr = nonce.data
        self.init_response = data
        self.peer_hashes, self.peer_certreq = read_sa_init_extras(message.payloads)
        self.peer_fragmentation = config.fragmentation != "no" and bool(
            message.notifies(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        self.peer_childless = bool(message.notifies(NotifyType.CHILDLESS_IKEV2_SUPPORTED))
        self._pending = None
        self._derive(proposal, g_ir, now=now)
        self.nat_detected = self._check_natd(message, self.spi_r)
        if self.nat_detected and self.local[1] == 500:
            # §2.23: after NAT detection the initiator moves to port 4500.
            self.local = (self.local[0], 4500)
            self.remote = (self.remote[0], 4500)
        self.engine._rekey_index(self)
        self._send_auth(now)

    def _derive(self, proposal: Proposal, g_ir: bytes, skeyseed: bytes | None = None,
                now: float = 0.0) -> None:
        """The seven SK_* keys (§2.14); a rekeyed IKE SA brings its own SKEYSEED (§2.18)."""
        self.proposal = proposal
        self.suite = IkeSuite(proposal.encryption[0],
                              proposal.integrity[0] if proposal.integrity else None,
                              proposal.prf[0])
        if skeyseed is None:
            keys = ike_sa_keys(self.suite, self.ni, self.nr, g_ir, self.spi_i, self.spi_r)
        else:
            keys = kdf.ike_keys(self.suite.prf, skeyseed, self.ni, self.nr, self.spi_i,
                                self.spi_r, self.suite.key_sizes)
        self.keys = keys
        self.sk_d, self.sk_pi, self.sk_pr = keys.SK_d, keys.SK_pi, keys.SK_pr
        enc, integ = self.suite.encryption, self.suite.integrity
        mine = (keys.SK_ei, keys.SK_ai) if self.initiator else (keys.SK_er, keys.SK_ar)
        peers = (keys.SK_er, keys.SK_ar) if self.initiator else (keys.SK_ei, keys.SK_ai)
        self.sk_out = SkCipher(enc, mine[0], integ, mine[1], rng=self.engine.rng)
        self.sk_in = SkCipher(enc, peers[0], integ, peers[1])
        if skeyseed is None and self.engine.report_keys:
            # As strongSwan logs them: before IKE_AUTH, so a failed AUTH can be read too.
            self._event(events.IkeSaKeysDerived, now,
                        connection=self.config.name if self.config else "",
                        initiator=self.initiator, spi_i=self.spi_i, spi_r=self.spi_r,
                        proposal=str(proposal), sk_ei=keys.SK_ei, sk_er=keys.SK_er,
                        sk_ai=keys.SK_ai, sk_ar=keys.SK_ar,
                        encryption_name=_wireshark_encryption(self.suite),
                        integrity_name=_wireshark_integrity(self.suite),
                        sk_d=keys.SK_d, sk_pi=keys.SK_pi, sk_pr=keys.SK_pr)

    # -- established: after IKE_AUTH or an IKE SA rekey -----------------------------------

    def _established(self, now: float, old: IkeSa | None = None) -> None:
        self.state = State.ESTABLISHED
        self.expires = None
        self.engine._established(self)
        self.last_heard = now
        config = self.config
        assert config is not None
        if config.rekey_time:
            span = config.rekey_time / 10
            self.rekey_at = now + config.rekey_time - negotiation.jitter(self.engine.rng, span)
        self.life_ends = now + config.life_time if config.life_time else None
        if old is not None:
            self.reauth_at = old.reauth_at  # a rekey does not postpone reauthentication
        elif config.reauth_time:
            span = config.reauth_time / 10
            self.reauth_at = now + config.reauth_time - negotiation.jitter(self.engine.rng,
                                                                           span)
        if self.reauth_at is not None and self.life_ends is not None:
            self.life_ends = min(self.life_ends, self.reauth_at + config.effective_over_time)
        keys = self.keys
        suite = self.suite
        assert keys is not None and suite is not None
        extra = {"old_ike_sa": old.name} if old is not None else {}
        if self._reauth_of is not None:
            extra["reauthenticates"] = self._reauth_of.name
        self._event(events.IkeSaRekeyed if old is not None else events.IkeSaEstablished, now,
                    connection=config.name,
                    initiator=self.initiator, spi_i=self.spi_i, spi_r=self.spi_r,
                    local=self.local, remote=self.remote, local_id=self.local_id,
                    remote_id=self.remote_id, proposal=str(self.proposal),
                    sk_ei=keys.SK_ei, sk_er=keys.SK_er, sk_ai=keys.SK_ai, sk_ar=keys.SK_ar,
                    encryption_name=_wireshark_encryption(suite),
                    integrity_name=_wireshark_integrity(suite),
                    nat_detected=self.nat_detected, local_auth=config.local_auth,
                    remote_auth=config.remote_auth, peer_certificate=self.peer_certificate,
                    virtual_ips=list(self.virtual_ips),
                    remote_virtual_ips=list(self.remote_virtual_ips),
                    dns_servers=list(self.dns_servers), **extra)


def _fragment_number(message: Message) -> int | None:
    """The Fragment Number of an SKF message (RFC 7383 §2.5), None for any other."""
    last = message.payloads[-1] if message.payloads else None
    return last.fragment_number if isinstance(last, EncryptedFragment) else None


@functools.lru_cache(maxsize=64)
def _wireshark_encryption(suite: IkeSuite) -> str:
    """Wireshark's name of the suite's cipher; cached, as a suite is frozen and every
    IkeSaEstablished event names it."""
    from ipseclab import keylog

    enc = suite.encryption
    bits = enc.key_bits
    if enc.keyword.startswith("aes") and "gcm" in enc.keyword:
        return keylog.IKEV2_ENCR_AES_GCM.get((bits, enc.icv_size), "")
    if enc.keyword.startswith("aes") and "ccm" in enc.keyword:
        return keylog.IKEV2_ENCR_AES_CCM.get((bits, enc.icv_size), "")
    if enc.keyword.startswith("aes") and enc.keyword.endswith("ctr"):
        return keylog.IKEV2_ENCR_AES_CTR.get(bits, "")
    if enc.keyword.startswith("aes"):
        return keylog.IKEV2_ENCR_AES_CBC.get(bits, "")
    if enc.keyword == "3des":
        return keylog.IKEV2_ENCR_3DES
    return enc.keyword  # e.g. ChaCha20-Poly1305: tshark 4.0 has no name for it


@functools.lru_cache(maxsize=64)
def _wireshark_integrity(suite: IkeSuite) -> str:
    from ipseclab import keylog

    if suite.integrity is None:
        return keylog.IKEV2_INTEG_NONE
    return suite.integrity.ike_wireshark_name
