"""One IKE SA: its state, its keys, its message IDs and the exchanges it runs (RFC 7296).

The table :data:`TRANSITIONS` is the protocol at a glance: in which state a message of which
exchange is accepted, and what handles it. Everything else is the handlers.

    initiator: INIT_SENT --IKE_SA_INIT resp--> AUTH_SENT --IKE_AUTH resp--> ESTABLISHED
    responder: (IKE_SA_INIT req, in the engine) INIT_DONE --IKE_AUTH req--> ESTABLISHED
    both:      ESTABLISHED --INFORMATIONAL--> ESTABLISHED | DELETED

Reliability (§2.1): only the requester retransmits; a request is resent after 1, 2, 4, 8 and
16 seconds (``retransmit_base``, doubling) and the SA is given up after the last timeout. A
responder keeps its last response and sends it again when the same request comes back (§2.1,
§2.2). Window size is 1: one request of ours outstanding at a time, queued otherwise.

Errors (§2.21): a message whose ICV fails is dropped without an answer; a request that is
malformed after decryption gets INVALID_SYNTAX; nothing a peer sends raises out of here.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipseclab.crypto.dh import DhPrivate
from ipseclab.crypto.proposals import Proposal
from ipseclab.errors import AuthenticationFailed as IcvFailed
from ipseclab.errors import ConfigError, InvalidKeyShare, IpsecLabError
from ipseclab.ike import events, negotiation
from ipseclab.ike.child import ChildSa, build_child_sas
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import AuthMethod, ExchangeType, HeaderFlag, NotifyType, ProtocolId
from ipseclab.ike.keys import IkeSuite, ike_sa_keys
from ipseclab.ike.message import Message
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import (
    Authentication,
    Delete,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    SecurityAssociation,
    TSi,
    TSr,
)
from ipseclab.ike.sk import SkCipher
from ipseclab.ipsec.selectors import TrafficSelector, narrow

if TYPE_CHECKING:
    from ipseclab.ike.engine import IkeEngine

Address = tuple[str, int]

__all__ = ["TRANSITIONS", "IkeSa", "State"]


class State(enum.StrEnum):
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    INIT_DONE = "init-done"  # responder: IKE_SA_INIT answered, half-open
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    ESTABLISHED = "established"
    DELETING = "deleting"  # our Delete of the IKE SA is out
    DELETED = "deleted"


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
}


@dataclass
class _Pending:
    """Our outstanding request: kept for retransmission until its response arrives."""

    exchange: int
    message_id: int
    data: bytes
    sent_at: float
    tries: int = 0
    on_response: Callable[[Message, list[Payload], float], None] | None = None


class IkeSa:
    """One IKE SA, either side. Built by :class:`ipseclab.ike.engine.IkeEngine`."""

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
        self.children: list[ChildSa] = []
        self.child_config: ChildConfig | None = None
        self._child_spi = 0
        self._cookie = b""
        self._init_retries = 0
        self.next_request_id = 0  # the Message ID of our next request
        self.expected_request_id = 0  # the Message ID of the peer's next request
        self._pending: _Pending | None = None
        self._queue: deque[tuple[int, list[Payload], Callable | None]] = deque()
        self._last_response: tuple[int, bytes] | None = None
        self._deleting: set[int] = set()  # inbound SPIs of child SAs we asked to delete
        self.created = 0.0
        self.last_heard = 0.0
        self.expires: float | None = None
        self.remote_id = ""
        self.local_id = ""

    # -- names and helpers -------------------------------------------------------------

    @property
    def name(self) -> str:
        """(SPIi, SPIr) in hex: how events and Wireshark name this IKE SA."""
        return self.spi_i.hex() + self.spi_r.hex()

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    def _event(self, event_cls: type[events.Event], now: float, **kw) -> None:
        self.engine._events.append(event_cls(self.name, time=now, **kw))

    def _flags(self, response: bool) -> HeaderFlag:
        flags = HeaderFlag.I if self.initiator else HeaderFlag(0)
        return flags | HeaderFlag.R if response else flags

    def _transmit(self, data: bytes) -> None:
        self.engine._out.append((data, self.local, self.remote))

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
        data = self.sk_out.seal(header, inner)  # type: ignore[union-attr]
        self._pending = _Pending(exchange, message_id, data, now, on_response=on_response)
        self._transmit(data)

    def _respond(self, request: Message, inner: list[Payload]) -> None:
        header = Message(self.spi_i, self.spi_r, request.exchange_type, self._flags(True),
                         request.message_id)
        data = self.sk_out.seal(header, inner)  # type: ignore[union-attr]
        self._last_response = (request.message_id, data)
        self.expected_request_id = request.message_id + 1
        self._transmit(data)

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
        dpd = self.config.dpd_delay if self.config else 0
        if dpd and self.state is State.ESTABLISHED and self._pending is None:
            times.append(self.last_heard + dpd)
        return min(times) if times else None

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
            self._transmit(p.data)
            return
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
        self.expires = None
        if was_established:
            for child in self.children:
                self._event(events.ChildSaDeleted, now, child=child.config.name,
                            reqid=child.reqid, spi_in=child.spi_in, spi_out=child.spi_out,
                            by_peer=by_peer)
            self.children.clear()
        if notify_event:
            self._event(events.IkeSaDeleted, now, reason=reason, by_peer=by_peer)
        self.engine._forget(self)

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
                if self._last_response[0] == message.message_id:
                    self._transmit(self._last_response[1])  # a retransmitted request (§2.1)
                return
            if message.message_id != self.expected_request_id:
                return  # outside the window (§2.3): drop
        handler = TRANSITIONS.get((self.role, self.state, message.exchange_type, response))
        if handler is None:
            return
        if message.exchange_type == _INIT:
            getattr(self, handler)(message, data, now)
            return
        try:
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
        ]
        message = Message(self.spi_i, bytes(8), _INIT, HeaderFlag.I, 0, payloads)
        self.init_request = message.to_bytes()
        self.next_request_id = 1
        self._pending = _Pending(_INIT, 0, self.init_request, now)
        self._transmit(self.init_request)

    def _natd_notifies(self) -> list[Notify]:
        spi_r = bytes(8) if self.initiator else self.spi_r  # §2.23: zero in the request
        return [Notify(NotifyType.NAT_DETECTION_SOURCE_IP,
                       negotiation.natd_hash(self.spi_i, spi_r, *self.local)),
                Notify(NotifyType.NAT_DETECTION_DESTINATION_IP,
                       negotiation.natd_hash(self.spi_i, spi_r, *self.remote))]

    def _check_natd(self, message: Message, spi_r: bytes) -> bool:
        """True if a NAT sits between us (§2.23); False also when the peer sent no hashes."""
        sources = message.notifies(NotifyType.NAT_DETECTION_SOURCE_IP)
        dests = message.notifies(NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not sources or not dests:
            return False
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
        self._pending = None
        self._derive(proposal, g_ir)
        self.nat_detected = self._check_natd(message, self.spi_r)
        if self.nat_detected and self.local[1] == 500:
            # §2.23: after NAT detection the initiator moves to port 4500.
            self.local = (self.local[0], 4500)
            self.remote = (self.remote[0], 4500)
        self.engine._rekey_index(self)
        self._send_auth(now)

    def _derive(self, proposal: Proposal, g_ir: bytes) -> None:
        self.proposal = proposal
        self.suite = IkeSuite(proposal.encryption[0],
                              proposal.integrity[0] if proposal.integrity else None,
                              proposal.prf[0])
        keys = ike_sa_keys(self.suite, self.ni, self.nr, g_ir, self.spi_i, self.spi_r)
        self.keys = keys
        self.sk_d, self.sk_pi, self.sk_pr = keys.SK_d, keys.SK_pi, keys.SK_pr
        enc, integ = self.suite.encryption, self.suite.integrity
        mine = (keys.SK_ei, keys.SK_ai) if self.initiator else (keys.SK_er, keys.SK_ar)
        peers = (keys.SK_er, keys.SK_ar) if self.initiator else (keys.SK_ei, keys.SK_ai)
        self.sk_out = SkCipher(enc, mine[0], integ, mine[1], rng=self.engine.rng)
        self.sk_in = SkCipher(enc, peers[0], integ, peers[1])

    # -- IKE_AUTH, initiator (§1.2, §2.15) --------------------------------------------------

    def _send_auth(self, now: float) -> None:
        config = self.config
        assert config is not None
        idi = negotiation.identification(config.local_id, self.local[0], IDi)
        self.local_id = idi.describe()
        auth = negotiation.psk_auth(self.suite.prf, config.psk, self.init_request,  # type: ignore
                                    self.nr, self.sk_pi, idi.to_bytes())
        inner: list[Payload] = [idi]
        if config.send_initial_contact:
            inner.append(Notify(NotifyType.INITIAL_CONTACT))
        if config.remote_id and config.remote_id != "%any":
            inner.append(negotiation.identification(config.remote_id, self.remote[0], IDr))
        inner.append(Authentication(AuthMethod.PSK, auth))
        child = self.child_config
        if child is not None:
            self._child_spi = self.engine.new_child_spi()
            if child.mode == "transport":
                inner.append(Notify(NotifyType.USE_TRANSPORT_MODE))
            inner += [
                negotiation.sa_payload_for(child.proposals, ProtocolId.ESP,
                                           self._child_spi.to_bytes(4, "big")),
                TSi(negotiation.selectors_to_wire(child.selectors("local", self.local[0]))),
                TSr(negotiation.selectors_to_wire(child.selectors("remote", self.remote[0]))),
            ]
        self.state = State.AUTH_SENT
        self.request(_AUTH, inner, now, None)

    def _on_auth_response(self, message: Message, inner: list[Payload], now: float) -> None:
        config = self.config
        assert config is not None
        self._request_done(now)
        notifies = [p for p in inner if isinstance(p, Notify)]
        if any(n.notify_type == NotifyType.AUTHENTICATION_FAILED for n in notifies):
            self._event(events.AuthenticationFailed, now, connection=config.name,
                        reason="the responder rejected our AUTH (AUTHENTICATION_FAILED)")
            self._delete(now, "authentication failed", by_peer=True)
            return
        idr = _find(inner, IDr)
        auth = _find(inner, Authentication)
        if idr is None or auth is None:
            errors = [n for n in notifies if n.is_error]
            notify = errors[0].notify_type if errors else NotifyType.INVALID_SYNTAX
            self._fail(now, notify, f"IKE_AUTH failed: {_notify_name(notify)}", by_peer=True)
            return
        if not config.remote_id_matcher.matches(idr.id_type, idr.data):
            self._event(events.AuthenticationFailed, now, connection=config.name,
                        reason=f"responder identity {idr.describe()} is not {config.remote_id}")
            self._delete(now, "authentication failed")
            return
        expected = negotiation.psk_auth(self.suite.prf, config.psk,  # type: ignore[union-attr]
                                        self.init_response, self.ni, self.sk_pr, idr.to_bytes())
        if auth.method != AuthMethod.PSK or not negotiation.auth_equal(auth.data, expected):
            self._event(events.AuthenticationFailed, now, connection=config.name,
                        reason="the responder's AUTH payload does not verify")
            self._delete(now, "authentication failed")
            return
        self.remote_id = idr.describe()
        self._established(now)
        if self.child_config is not None:
            self._finish_child_initiator(inner, notifies, now)

    def _finish_child_initiator(self, inner: list[Payload], notifies: list[Notify],
                                now: float) -> None:
        child = self.child_config
        assert child is not None
        errors = [n for n in notifies if n.is_error]
        sa, tsi, tsr = _find(inner, SecurityAssociation), _find(inner, TSi), _find(inner, TSr)
        if errors or sa is None or tsi is None or tsr is None:
            notify = errors[0].notify_type if errors else NotifyType.INVALID_SYNTAX
            self._event(events.ChildSaFailed, now, child=child.name, notify=notify,
                        reason=f"responder answered {_notify_name(notify)}")
            return
        choice = negotiation.accept_choice(child.proposals, sa, ProtocolId.ESP)
        local_ts = negotiation.selectors_from_wire(tsi.selectors)
        remote_ts = negotiation.selectors_from_wire(tsr.selectors)
        offered_local = child.selectors("local", self.local[0])
        offered_remote = child.selectors("remote", self.remote[0])
        if choice is None or len(choice[0].spi) != 4:
            self._child_failed_after_auth(child, NotifyType.NO_PROPOSAL_CHOSEN, now)
            return
        if (not local_ts or not remote_ts
                or _narrow(local_ts, offered_local) != local_ts
                or _narrow(remote_ts, offered_remote) != remote_ts):
            self._child_failed_after_auth(child, NotifyType.TS_UNACCEPTABLE, now)
            return
        transport = any(n.notify_type == NotifyType.USE_TRANSPORT_MODE for n in notifies)
        spi_out = int.from_bytes(choice[0].spi, "big")
        self._install_child(child, choice[1], self._child_spi, spi_out,
                            "transport" if transport else "tunnel", local_ts, remote_ts, now)

    def _child_failed_after_auth(self, child: ChildConfig, notify: int, now: float) -> None:
        """The responder's child SA is unacceptable to us: report it and delete it (§2.9)."""
        self._event(events.ChildSaFailed, now, child=child.name, notify=notify,
                    reason="the responder's child SA is not what we proposed")
        # The responder has installed it: ask for its deletion (§1.4.1), by our inbound SPI.
        self.request(_INFO, [Delete.child_sas(ProtocolId.ESP,
                                              [self._child_spi.to_bytes(4, "big")])], now, None)

    def _install_child(self, config: ChildConfig, proposal: Proposal, spi_in: int,
                       spi_out: int, mode: str, local_ts: list, remote_ts: list,
                       now: float) -> None:
        child = ChildSa(config, self.engine.new_reqid(), spi_in, spi_out, proposal, mode,
                        local_ts, remote_ts)
        try:
            build_child_sas(child, initiator=self.initiator, prf=self.suite.prf,  # type: ignore
                            sk_d=self.sk_d, ni=self.ni, nr=self.nr, local=self.local,
                            remote=self.remote, nat=self.nat_detected)
        except (ConfigError, IpsecLabError, ValueError) as error:
            self._event(events.ChildSaFailed, now, child=config.name,
                        notify=NotifyType.NO_PROPOSAL_CHOSEN, reason=str(error))
            return
        self.children.append(child)
        self._event(events.ChildSaEstablished, now, connection=self.config.name,  # type: ignore
                    child=config.name, reqid=child.reqid, mode=mode, proposal=str(proposal),
                    inbound=child.inbound, outbound=child.outbound, local_ts=local_ts,
                    remote_ts=remote_ts, selectors=child.selectors)

    def _established(self, now: float) -> None:
        self.state = State.ESTABLISHED
        self.expires = None
        self.engine._established(self)
        self.last_heard = now
        keys = self.keys
        suite = self.suite
        assert keys is not None and suite is not None
        self._event(events.IkeSaEstablished, now, connection=self.config.name,  # type: ignore
                    initiator=self.initiator, spi_i=self.spi_i, spi_r=self.spi_r,
                    local=self.local, remote=self.remote, local_id=self.local_id,
                    remote_id=self.remote_id, proposal=str(self.proposal),
                    sk_ei=keys.SK_ei, sk_er=keys.SK_er, sk_ai=keys.SK_ai, sk_ar=keys.SK_ar,
                    encryption_name=_wireshark_encryption(suite),
                    integrity_name=_wireshark_integrity(suite),
                    nat_detected=self.nat_detected)

    # -- IKE_AUTH, responder ----------------------------------------------------------------

    def _on_auth_request(self, message: Message, inner: list[Payload], now: float) -> None:
        idi = _find(inner, IDi)
        auth = _find(inner, Authentication)
        if idi is None or auth is None:
            self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])
            self._fail(now, NotifyType.INVALID_SYNTAX, "IKE_AUTH request lacks IDi or AUTH")
            return
        config = next((c for c in self.candidates
                       if c.remote_id_matcher.matches(idi.id_type, idi.data)), None)
        reason = ""
        if config is None:
            reason = f"no connection accepts identity {idi.describe()}"
        elif auth.method != AuthMethod.PSK:
            reason = f"peer uses auth method {auth.method}, we want PSK"
        else:
            expected = negotiation.psk_auth(self.suite.prf, config.psk,  # type: ignore
                                            self.init_request, self.nr, self.sk_pi,
                                            idi.to_bytes())
            if not negotiation.auth_equal(auth.data, expected):
                reason = f"AUTH of {idi.describe()} does not verify (wrong PSK?)"
        if reason:
            self._respond(message, [Notify(NotifyType.AUTHENTICATION_FAILED)])
            name = config.name if config else (self.candidates[0].name
                                               if self.candidates else "")
            self._event(events.AuthenticationFailed, now, connection=name, reason=reason)
            self._delete(now, "authentication failed")
            return
        assert config is not None
        self.config = config
        self.remote_id = idi.describe()
        idr = negotiation.identification(config.local_id, self.local[0], IDr)
        self.local_id = idr.describe()
        my_auth = negotiation.psk_auth(self.suite.prf, config.psk,  # type: ignore[union-attr]
                                       self.init_response, self.ni, self.sk_pr, idr.to_bytes())
        reply: list[Payload] = [idr, Authentication(AuthMethod.PSK, my_auth)]
        notifies = [p for p in inner if isinstance(p, Notify)]
        child_reply, child_result = self._negotiate_child(inner, notifies)
        reply += child_reply
        self._respond(message, reply)
        if any(n.notify_type == NotifyType.INITIAL_CONTACT for n in notifies):
            self.engine._initial_contact(self, now)
        self._established(now)
        if child_result is not None:
            if isinstance(child_result, tuple):
                self._install_child(*child_result, now=now)
            else:
                self._event(events.ChildSaFailed, now, child="", notify=child_result,
                            reason=f"we answered {_notify_name(child_result)}")

    def _negotiate_child(self, inner: list[Payload], notifies: list[Notify]
                         ) -> tuple[list[Payload], tuple | int | None]:
        """The responder's half of child SA creation: (reply payloads, result).

        The result is the arguments of :meth:`_install_child`, an error notify type, or
        None when the initiator asked for no child SA.
        """
        config = self.config
        assert config is not None
        sa, tsi, tsr = _find(inner, SecurityAssociation), _find(inner, TSi), _find(inner, TSr)
        if sa is None and tsi is None and tsr is None:
            return [], None
        if sa is None or tsi is None or tsr is None:
            return [Notify(NotifyType.INVALID_SYNTAX)], NotifyType.INVALID_SYNTAX
        their_local = negotiation.selectors_from_wire(tsr.selectors)
        their_remote = negotiation.selectors_from_wire(tsi.selectors)
        theirs = negotiation.read_proposals(sa, ProtocolId.ESP)
        wants_transport = any(n.notify_type == NotifyType.USE_TRANSPORT_MODE for n in notifies)
        failure: int = NotifyType.NO_PROPOSAL_CHOSEN
        for child in config.children:
            choice = negotiation.choose_proposal(child.proposals, theirs)
            if choice is None or len(choice[0].spi) != 4:
                continue
            local_ts = _narrow(their_local, child.selectors("local", self.local[0]))
            remote_ts = _narrow(their_remote, child.selectors("remote", self.remote[0]))
            if not local_ts or not remote_ts:
                failure = NotifyType.TS_UNACCEPTABLE
                continue
            wire, proposal = choice
            spi_in = self.engine.new_child_spi()
            mode = "transport" if wants_transport and child.mode == "transport" else "tunnel"
            reply: list[Payload] = []
            if mode == "transport":
                reply.append(Notify(NotifyType.USE_TRANSPORT_MODE))
            reply += [
                negotiation.sa_payload_for([proposal], ProtocolId.ESP,
                                           spi_in.to_bytes(4, "big"), [wire.number]),
                TSi(negotiation.selectors_to_wire(remote_ts)),
                TSr(negotiation.selectors_to_wire(local_ts)),
            ]
            spi_out = int.from_bytes(wire.spi, "big")
            if spi_out < 256:
                return [Notify(NotifyType.INVALID_SYNTAX)], NotifyType.INVALID_SYNTAX
            return reply, (child, proposal, spi_in, spi_out, mode, local_ts, remote_ts)
        return [Notify(failure)], failure

    # -- INFORMATIONAL (§1.4) ---------------------------------------------------------------

    def check_liveness(self, now: float) -> None:
        """An empty INFORMATIONAL request: the peer must answer (§1.4, dead peer detection)."""
        self.request(_INFO, [], now, None)

    def delete_child(self, reqid: int, now: float) -> bool:
        child = next((c for c in self.children if c.reqid == reqid), None)
        if child is None or self.state is not State.ESTABLISHED:
            return False
        self._deleting.add(child.spi_in)
        self.request(_INFO, [Delete.child_sas(ProtocolId.ESP, [child.spi_in.to_bytes(4, "big")])],
                     now, None)
        return True

    def delete(self, now: float) -> None:
        """Delete this IKE SA and its child SAs: a Delete(IKE) request (§1.4.1)."""
        if self.state is not State.ESTABLISHED:
            self._delete(now, "deleted locally")
            return
        self.state = State.DELETING
        self._queue.clear()
        if self._pending is not None:
            self._pending = None
        self.request(_INFO, [Delete(ProtocolId.IKE)], now, None)

    def _on_informational_request(self, message: Message, inner: list[Payload],
                                  now: float) -> None:
        deletes = [p for p in inner if isinstance(p, Delete)]
        if any(d.protocol_id == ProtocolId.IKE for d in deletes):
            self._respond(message, [])
            self._delete(now, "deleted by peer", by_peer=True)
            return
        reply: list[Payload] = []
        for delete in deletes:
            if delete.protocol_id not in (ProtocolId.ESP, ProtocolId.AH):
                continue
            ours = []
            for spi in delete.spis:
                child = next((c for c in self.children
                              if c.spi_out == int.from_bytes(spi, "big")), None)
                if child is None:
                    continue
                self.children.remove(child)
                ours.append(child.spi_in.to_bytes(4, "big"))
                self._event(events.ChildSaDeleted, now, child=child.config.name,
                            reqid=child.reqid, spi_in=child.spi_in, spi_out=child.spi_out,
                            by_peer=True)
            if ours:
                reply.append(Delete.child_sas(delete.protocol_id, ours))
        self._respond(message, reply)

    def _on_informational_response(self, message: Message, inner: list[Payload],
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

    def _drop_child(self, spi: int, now: float, *, by_out: bool) -> None:
        child = next((c for c in self.children
                      if (c.spi_out if by_out else c.spi_in) == spi), None)
        if child is None:
            return
        self.children.remove(child)
        self._event(events.ChildSaDeleted, now, child=child.config.name, reqid=child.reqid,
                    spi_in=child.spi_in, spi_out=child.spi_out)

    def _drop_unanswered_deletes(self, now: float) -> None:
        """Child SAs we asked to delete are gone even if the peer did not list them."""
        for spi in list(self._deleting):
            self._drop_child(spi, now, by_out=False)
        self._deleting.clear()

    # -- CREATE_CHILD_SA: not implemented yet -------------------------------------------------

    def _on_create_child_request(self, message: Message, inner: list[Payload],
                                 now: float) -> None:
        """We cannot make more child SAs yet: NO_ADDITIONAL_SAS (§1.3)."""
        self._respond(message, [Notify(NotifyType.NO_ADDITIONAL_SAS)])


def _find(payloads: list[Payload], cls: type) -> Payload | None:
    return next((p for p in payloads if isinstance(p, cls)), None)  # type: ignore[return-value]


def _narrow(proposed: list[TrafficSelector], allowed: list[TrafficSelector]
            ) -> list[TrafficSelector]:
    return narrow(proposed, allowed)


def _notify_name(notify: int) -> str:
    try:
        return NotifyType(notify).name
    except ValueError:
        return f"notify {notify}"


def _wireshark_encryption(suite: IkeSuite) -> str:
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


def _wireshark_integrity(suite: IkeSuite) -> str:
    from ipseclab import keylog

    if suite.integrity is None:
        return keylog.IKEV2_INTEG_NONE
    return suite.integrity.ike_wireshark_name
