"""Which IKE SA algorithms does a responder accept? One IKE_SA_INIT request per question.

An engineer testing a gateway wants its answer for every algorithm, not just the one a
handshake settles on. Each question here is an IKE_SA_INIT request (RFC 7296 §1.2) whose SA
payload varies one transform type: one encryption algorithm (or integrity algorithm, PRF,
DH group) under test, every algorithm we can name for the other types. The responder picks
a proposal or refuses all of them (§2.7).

The trick that keeps the gateway stateless: each proposal also lists a *decoy* DH group from
the private-use range (IANA: 1024-65535), and the KE payload is for that decoy group. §3.4
wants the KE group to be one the SA payload offers, so the request is well formed; no real
responder implements the decoy, so whenever it accepts a proposal it must choose another
group and answer INVALID_KE_PAYLOAD naming it (§1.3), and that answer creates no IKE SA
(§1.2). NO_PROPOSAL_CHOSEN means refused.

Then, for each accepted group, the key share checks of RFC 6989 (:mod:`.probe_shares`): KE
data no honest peer sends, each after a stateless control (the group alone, asked with the
decoy's KE), and, where the responder answers one, an IKE_AUTH sealed with the keys a peer
without the checks would derive.

Only the last, optional request (``full``) sends a real key share for a group the responder
accepted, to read its whole IKE_SA_INIT answer: chosen proposal, notifications
(fragmentation, signature hashes, ...), vendor IDs. That one leaves a half-open IKE SA on
the responder, which it drops after its own timeout.

Sans-IO: :class:`Prober` gives datagrams to send and takes the ones received with the
current time; :mod:`ipseclab.drivers.ike_probe` runs it over UDP. Probe only gateways you
run or may test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ipseclab.crypto import dh as _dh
from ipseclab.crypto import guidance
from ipseclab.crypto import prf as _prf
from ipseclab.crypto import transforms as _tf
from ipseclab.crypto.proposals import (
    TRANSFORM_ENCR,
    TRANSFORM_INTEG,
    TRANSFORM_KE,
    TRANSFORM_PRF,
    Proposal,
)
from ipseclab.ike import negotiation, sa_payload
from ipseclab.ike.constants import (
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
    enum_or_int,
)
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payload_base import MalformedMessage
from ipseclab.ike.payloads import KeyExchange, Nonce, Notify, SecurityAssociation, VendorId
from ipseclab.ike.probe_shares import AuthTry, ShareCheck, degenerate_shares, judge_share_answer
from ipseclab.ike.sa_common import notify_name

__all__ = ["DECOY_GROUP", "KINDS", "Answer", "Candidate", "FullAnswer", "Prober", "ShareCheck",
           "candidates", "degenerate_shares"]

DECOY_GROUP = 65001  # private use (RFC 7296 §3.3.2 registry: 1024-65535)
KINDS = ("encryption", "integrity", "prf", "dh")
_KIND_TYPE = {"encryption": TRANSFORM_ENCR, "integrity": TRANSFORM_INTEG, "prf": TRANSFORM_PRF,
              "dh": TRANSFORM_KE}
# Preference for the real offer: what RFC 8247 recommends first, what it advises against last.
_RANK = {"MUST": 0, "SHOULD+": 0, "SHOULD": 1, "MUST-": 2, "MAY": 3, "": 3, "SHOULD NOT": 5,
         "MUST NOT": 6}
# Named here only to ask about them: nothing in ipseclab implements them.
_PROBE_ONLY = [("encryption", "des", 2, None), ("encryption", "camellia128", 23, 128),
               ("encryption", "camellia256", 23, 256)]


@dataclass(frozen=True)
class Candidate:
    """One algorithm to ask about: a strongSwan keyword and its transform on the wire."""

    kind: str  # one of KINDS
    keyword: str
    transform_id: int
    key_bits: int | None = None
    aead: bool = False
    implemented: bool = True  # ipseclab runs it, so the real offer may name it

    @property
    def transform_type(self) -> int:
        return _KIND_TYPE[self.kind]

    @property
    def level(self) -> str:
        """What RFC 8247 §2 says about it for IKEv2, or ""."""
        return guidance.ike_level(self.kind, self.keyword)

    def wire(self) -> sa_payload.Transform:
        return sa_payload.Transform.of(self.transform_type, self.transform_id, self.key_bits)


def candidates(kinds: Sequence[str] = KINDS) -> list[Candidate]:
    """Every IKE SA algorithm ipseclab can name, by kind, plus a few old ones only asked about."""
    out: list[Candidate] = []
    if "encryption" in kinds:
        for alg in _tf.ENCRYPTION.values():
            if alg.confidential:  # NULL and GMAC cannot protect IKE (RFC 5282 §8)
                [(_, tid, bits)] = Proposal("ike", encryption=[alg]).transforms()
                out.append(Candidate("encryption", alg.keyword, tid, bits, alg.aead))
        out += [Candidate(kind, word, tid, bits, implemented=False)
                for kind, word, tid, bits in _PROBE_ONLY]
    if "integrity" in kinds:
        out += [Candidate("integrity", a.keyword, a.iana_id) for a in _tf.INTEGRITY.values()]
    if "prf" in kinds:
        out += [Candidate("prf", a.keyword, a.iana_id) for a in _prf.PRF.values()]
    if "dh" in kinds:
        out += [Candidate("dh", g.keyword, g.iana_id) for g in _dh.DH_GROUPS.values()
                if g.iana_id < _dh.PRIVATE_USE_MIN]
    return out


@dataclass
class Answer:
    """What the responder said to the question about ``candidate``.

    ``verdict``: ``accepted``, ``refused``, ``no answer`` or ``error`` (an error Notify other
    than the two expected ones, or a malformed reply; ``detail`` says which).
    """

    candidate: Candidate
    verdict: str
    detail: str = ""
    group: int | None = None  # the DH group INVALID_KE_PAYLOAD named


@dataclass
class FullAnswer:
    """The responder's IKE_SA_INIT response to a real offer (RFC 7296 §1.2)."""

    verdict: str  # "answered", "refused", "no answer" or "error"
    detail: str = ""
    proposal: str = ""  # the chosen proposal in strongSwan syntax
    notifies: list[str] = field(default_factory=list)
    vendor_ids: list[str] = field(default_factory=list)  # hex
    payloads: list[str] = field(default_factory=list)
    cookie: bool = False


# A share check to make: the group, the check (None: the group's control), the KE data and
# the secrets a peer without checks would compute from it.
_Planned = tuple[_dh.DhGroup, "ShareCheck | None", bytes, list[bytes]]


@dataclass
class _Question:
    """One request in flight: the message, how often it went out, and when it did last."""

    spi_i: bytes
    message: Message
    candidate: Candidate | None  # None: a share check or the full offer
    share: ShareCheck | None = None
    control: _dh.DhGroup | None = None  # the stateless control before a group's share checks
    auth: AuthTry | None = None  # an IKE_AUTH sealed with keys from a degenerate share
    secrets: list[bytes] = field(default_factory=list)  # of the share check asked
    sent: int = 0
    last_sent: float = 0.0
    cookie_rounds: int = 0
    sealed: bytes | None = None  # an encrypted request, sent as it is

    def datagram(self) -> bytes:
        return self.sealed if self.sealed is not None else self.message.to_bytes()


class Prober:
    """Ask a responder about each candidate in turn, then make the key share checks of each
    accepted group (``share_checks``), then (``full``) one real offer.

    Drive it with :meth:`poll` (what to send now, when to call again) and :meth:`receive`.
    A request unanswered after ``tries`` sendings ``timeout`` seconds apart counts as
    ``no answer``; ``give_up`` such answers in a row stop the probe (the address does not
    answer IKE, or a rate limit kicked in), as does no answer to the very first question.
    """

    def __init__(self, candidate_list: Sequence[Candidate] | None = None, *, full: bool = True,
                 share_checks: bool = True, timeout: float = 1.0, tries: int = 3,
                 interval: float = 0.0, give_up: int = 3,
                 rng: Callable[[int], bytes] = os.urandom, decoy: int = DECOY_GROUP) -> None:
        self.candidates = list(candidates() if candidate_list is None else candidate_list)
        if not self.candidates:
            raise ValueError("nothing to probe")
        self.full = full
        self.timeout, self.tries, self.interval, self.give_up = timeout, tries, interval, give_up
        self._rng = rng
        self._decoy = decoy
        self._all = candidates()  # the background for the other transform types
        self.answers: list[Answer] = []
        self.full_answer: FullAnswer | None = None
        self.share_checks: list[ShareCheck] = []
        self._shares: list[_Planned] | None = (
            None if share_checks else [])  # planned once the questions are answered
        self.stopped = ""  # why the probe ended early
        self.cookie_demanded = False
        self._next = 0  # index of the next candidate
        self._question: _Question | None = None
        self._silent = 0  # no answers in a row
        self._ready_at = 0.0
        self._finished = False
        self._ke_rounds = 0  # INVALID_KE_PAYLOAD answers to the real offer

    # -- driving ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def asked(self) -> int:
        """Requests settled so far: questions, share checks and the full offer."""
        return (len(self.answers) + sum(1 for c in self.share_checks if c.verdict)
                + (self.full_answer is not None))

    @property
    def total(self) -> int:
        """Requests to make, as far as known (share checks count once planned)."""
        planned = len(self.share_checks) if self._shares is not None else 0
        return len(self.candidates) + planned + int(self.full)

    def poll(self, now: float) -> tuple[bytes | None, float | None]:
        """A datagram to send now (or None), and when to call again (None: the probe is done)."""
        q = self._question
        if q is None:
            if self._finished:
                return None, None
            if now < self._ready_at:
                return None, self._ready_at
            q = self._question = self._ask()
            if q is None:
                self._finished = True
                return None, None
        if q.sent and now < q.last_sent + self.timeout:
            return None, q.last_sent + self.timeout
        if q.sent >= self.tries:
            self._settle(q, "no answer", f"no answer to {q.sent} requests", now)
            return self.poll(now)
        q.sent += 1
        q.last_sent = now
        return q.datagram(), now + self.timeout

    def receive(self, data: bytes, now: float) -> None:
        """Take one UDP payload from the responder; anything not answering our request is
        ignored (a late answer to an earlier question, a stray datagram)."""
        q = self._question
        if q is None:
            return
        try:
            reply = parse_message(data)
        except MalformedMessage:
            return
        exchange, message_id = ((ExchangeType.IKE_AUTH, 1) if q.auth is not None
                                else (ExchangeType.IKE_SA_INIT, 0))
        if (reply.spi_i != q.spi_i or reply.exchange_type != exchange
                or not reply.is_response or reply.message_id != message_id):
            return
        if q.auth is not None:
            self._settle_auth(q.auth, data, reply, now)
            return
        cookie = reply.notifies(NotifyType.COOKIE)
        if cookie:
            # §2.6: send the same request again with the COOKIE first; ask at once.
            self.cookie_demanded = True
            if q.cookie_rounds >= 2:
                self._settle(q, "error", "COOKIE demanded again and again", now)
                return
            q.cookie_rounds += 1
            payloads = [p for p in q.message.payloads
                        if not (isinstance(p, Notify) and p.notify_type == NotifyType.COOKIE)]
            q.message.payloads = [Notify(NotifyType.COOKIE, cookie[0].data), *payloads]
            q.sent = 0
            return
        if q.control is not None:
            named = reply.notifies(NotifyType.INVALID_KE_PAYLOAD)
            if not (named and _named_group(named[0]) == q.control.iana_id):
                errors = [notify_name(n.notify_type) for n in reply.notifies() if n.is_error]
                self._skip_shares(q.control, errors[0] if errors else "an odd answer")
            self._question = None
            self._ready_at = now + self.interval
            return
        if q.share is not None:
            self._settle_share(q, reply, now)
            return
        if q.candidate is None:
            invalid_ke = reply.notifies(NotifyType.INVALID_KE_PAYLOAD)
            group = _dh.dh_group_by_id(_named_group(invalid_ke[0])) if invalid_ke else None
            if group is not None and self._ke_rounds < 2:
                # §1.3: the responder prefers another of the groups offered: guess again.
                self._ke_rounds += 1
                self._question = self._full_question(group)
                return
            self._settle_full(q, reply)
            return
        verdict, detail, group = self._judge(q.candidate, reply)
        self._settle(q, verdict, detail, now, group)

    # -- questions -------------------------------------------------------------------------

    def _ask(self) -> _Question | None:
        if self._next < len(self.candidates):
            candidate = self.candidates[self._next]
            self._next += 1
            proposals = self._proposals_about(candidate)
            ke = KeyExchange(self._decoy, self._rng(32))
            return self._question_for(proposals, ke, candidate)
        if self._shares is None:
            self._shares = self._plan_shares()
        if self._shares:
            return self._share_question(*self._shares.pop(0))
        group = self._full_group()
        if not self.full or group is None or self.full_answer is not None:
            return None
        return self._full_question(group)

    def _share_question(self, group: _dh.DhGroup, check: ShareCheck | None, data: bytes,
                        secrets: list[bytes]) -> _Question:
        if check is None:  # the control: this group alone, asked the stateless way
            q = self._question_for(self._real_proposals([group.iana_id, self._decoy]),
                                   KeyExchange(self._decoy, self._rng(32)), None)
            q.control = group
        else:
            q = self._question_for(self._real_proposals([group.iana_id], implemented=True),
                                   KeyExchange(group.iana_id, data), None)
            q.share, q.secrets = check, secrets
        return q

    def _plan_shares(self) -> list[_Planned]:
        """For each accepted group: a control (is an offer of this group alone acceptable?
        INVALID_KE_PAYLOAD for the decoy says yes, statelessly), then its degenerate shares,
        so that a refusal can only mean the key share."""
        plan: list[_Planned] = []
        for c in self._accepted("dh"):
            group = _dh.dh_group_by_id(c.transform_id)
            if group is None:
                continue
            plan.append((group, None, b"", []))
            for label, data, secrets in degenerate_shares(group):
                check = ShareCheck(group.keyword, label)
                self.share_checks.append(check)
                plan.append((group, check, data, secrets))
        return plan

    def _skip_shares(self, group: _dh.DhGroup, why: str) -> None:
        """The control failed: the share checks of ``group`` would prove nothing."""
        assert self._shares is not None
        for _, check, _, _ in self._shares:
            if check is not None and check.group == group.keyword:
                check.verdict = "inconclusive"
                check.detail = f"an offer of {group.keyword} alone got {why}"
        self._shares = [e for e in self._shares if e[0] is not group]

    def _full_question(self, group: _dh.DhGroup) -> _Question:
        ke = KeyExchange(group.iana_id, group.generate().public_bytes())
        return self._question_for(self._real_proposals(), ke, None)

    def _question_for(self, proposals: list[list[sa_payload.Transform]], ke: KeyExchange,
                      candidate: Candidate | None) -> _Question:
        spi_i = self._rng(8)
        sa = SecurityAssociation([sa_payload.Proposal(n, ProtocolId.IKE, b"", transforms)
                                  for n, transforms in enumerate(proposals, 1)])
        payloads = [sa, ke, Nonce(self._rng(32)),
                    Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)]
        message = Message(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.I, 0, payloads)
        return _Question(spi_i, message, candidate)

    def _of(self, kind: str, aead: bool | None = None, implemented: bool = False
            ) -> list[sa_payload.Transform]:
        return [c.wire() for c in self._all if c.kind == kind
                and (aead is None or c.aead == aead) and (c.implemented or not implemented)]

    def _proposals_about(self, c: Candidate) -> list[list[sa_payload.Transform]]:
        """The SA payload asking about ``c``: ``c`` alone for its type, everything else."""
        decoy = sa_payload.Transform.of(TRANSFORM_KE, self._decoy)
        dh = [c.wire(), decoy] if c.kind == "dh" else [*self._of("dh"), decoy]
        prf = [c.wire()] if c.kind == "prf" else self._of("prf")
        integrity = [c.wire()] if c.kind == "integrity" else self._of("integrity")
        if c.kind == "encryption":
            return [[c.wire(), *prf, *([] if c.aead else integrity), *dh]]
        classic = [*self._of("encryption", aead=False), *prf, *integrity, *dh]
        if c.kind == "integrity":
            return [classic]  # an AEAD proposal has no integrity transform (RFC 5282 §8)
        return [classic, [*self._of("encryption", aead=True), *prf, *dh]]

    def _accepted(self, kind: str) -> list[Candidate]:
        return [a.candidate for a in self.answers
                if a.verdict == "accepted" and a.candidate.kind == kind]

    def _full_group(self) -> _dh.DhGroup | None:
        """The KE guess of the real offer: the accepted group the responder named most often
        when it chose freely, RFC 8247's better one on a tie."""
        named = [a.group for a in self.answers if a.group is not None]
        groups = [c for c in self._accepted("dh") if c.implemented]
        groups += [c for c in self._all if c.kind == "dh" and c.transform_id in named
                   and c not in groups]
        groups.sort(key=lambda c: (-named.count(c.transform_id), _RANK.get(c.level, 3)))
        for c in groups:
            return _dh.dh_group_by_id(c.transform_id)
        return None

    def _real_proposals(self, groups: Sequence[int] | None = None, implemented: bool = False
                        ) -> list[list[sa_payload.Transform]]:
        """What an initiator offering everything the responder accepted would send, best first
        by RFC 8247 (``groups`` instead of the accepted groups if given); the responder's
        choice is its preference. (Our key is never used, so unimplemented ones may be in.)"""
        def pick(kind: str, aead: bool | None = None) -> list[sa_payload.Transform]:
            ok = [c for c in self._accepted(kind) if (aead is None or c.aead == aead)
                  and (c.implemented or not implemented)]
            ok.sort(key=lambda c: _RANK.get(c.level, 3))
            return [c.wire() for c in ok] or self._of(kind, aead, implemented=True)

        dh = (pick("dh") if groups is None
              else [sa_payload.Transform.of(TRANSFORM_KE, g) for g in groups])
        classic = [*pick("encryption", False), *pick("prf"), *pick("integrity"), *dh]
        combined = [*pick("encryption", True), *pick("prf"), *dh]
        known = self._accepted("encryption")
        if not known:  # encryption not asked about (or nothing accepted): offer both kinds
            return [classic, combined]
        return [p for p, aead in ((classic, False), (combined, True))
                if any(c.aead == aead for c in known)]

    # -- answers ---------------------------------------------------------------------------

    def _judge(self, c: Candidate, reply: Message) -> tuple[str, str, int | None]:
        invalid_ke = reply.notifies(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke:
            try:
                group = int(invalid_ke[0].accepted_group())
            except MalformedMessage:
                return "error", "INVALID_KE_PAYLOAD without a group", None
            name = _group_name(group)
            if c.kind == "dh" and group != c.transform_id:
                return "error", f"INVALID_KE_PAYLOAD names {name}, not the group offered", group
            return "accepted", f"INVALID_KE_PAYLOAD: wants {name}", group
        if reply.notifies(NotifyType.NO_PROPOSAL_CHOSEN):
            return "refused", "NO_PROPOSAL_CHOSEN", None
        errors = [n for n in reply.notifies() if n.is_error]
        if errors:
            return "error", notify_name(errors[0].notify_type), None
        if reply.find(SecurityAssociation) is not None:
            # It took the decoy's KE data: it implements our private-use group, or never
            # checks. Accepted either way; the detail says how odd this is.
            return "accepted", "IKE_SA_INIT answered with the decoy KE group", None
        return "error", "an IKE_SA_INIT response without SA payload or error", None

    def _settle(self, q: _Question, verdict: str, detail: str, now: float,
                group: int | None = None) -> None:
        self._question = None
        self._ready_at = now + self.interval
        if q.control is not None:
            self._skip_shares(q.control, verdict)
            return
        if q.auth is not None:
            if q.auth.secrets:
                self._question = self._auth_question(q.spi_i, q.auth)
            else:
                q.auth.ignored()
            return
        if q.share is not None:
            q.share.verdict = "refused" if verdict == "no answer" else verdict
            q.share.detail = detail
            return
        if q.candidate is None:
            self.full_answer = FullAnswer(verdict, detail, cookie=q.cookie_rounds > 0)
            self._finished = True
            return
        self.answers.append(Answer(q.candidate, verdict, detail, group))
        self._silent = self._silent + 1 if verdict == "no answer" else 0
        if verdict == "no answer" and (len(self.answers) == 1 or self._silent >= self.give_up):
            self.stopped = (f"{self._silent} question(s) in a row unanswered: no IKE responder"
                            " there, or it stopped answering (a rate limit?)")
            self._finished = True

    def _settle_share(self, q: _Question, reply: Message, now: float) -> None:
        assert q.share is not None
        self._question = None
        self._ready_at = now + self.interval
        auth = judge_share_answer(q.share, q.message, reply, q.secrets)
        if auth is not None:
            self._question = self._auth_question(q.spi_i, auth)

    def _auth_question(self, spi_i: bytes, auth: AuthTry) -> _Question:
        q = _Question(spi_i, Message(spi_i, auth.spi_r, ExchangeType.IKE_AUTH, HeaderFlag.I, 1),
                      None, auth=auth)
        q.sealed = auth.next_request(spi_i, self._rng)
        return q

    def _settle_auth(self, auth: AuthTry, data: bytes, reply: Message, now: float) -> None:
        if auth.opens(data, reply):
            self._question = None
            self._ready_at = now + self.interval

    def _settle_full(self, q: _Question, reply: Message) -> None:
        self._question = None
        self._finished = True
        notifies = [notify_name(n.notify_type) for n in reply.notifies()]
        errors = [n for n in reply.notifies() if n.is_error]
        sa = reply.find(SecurityAssociation)
        if errors or sa is None:
            verdict = "refused" if errors else "error"
            detail = notifies[0] if notifies else "no SA payload"
            self.full_answer = FullAnswer(verdict, detail, notifies=notifies,
                                          cookie=q.cookie_rounds > 0)
            return
        self.full_answer = FullAnswer(
            "answered", proposal=negotiation.describe_offer(sa, ProtocolId.IKE),
            notifies=notifies,
            vendor_ids=[p.data.hex() for p in reply.payloads if isinstance(p, VendorId)],
            payloads=[_payload_name(p.payload_type) for p in reply.payloads],
            cookie=q.cookie_rounds > 0)


def _named_group(notify: Notify) -> int:
    try:
        return int(notify.accepted_group())
    except MalformedMessage:
        return -1


def _group_name(group_id: int) -> str:
    group = _dh.dh_group_by_id(group_id)
    return group.keyword if group is not None else f"group {group_id}"



def _payload_name(payload_type: int) -> str:
    value = enum_or_int(PayloadType, payload_type)
    return value.name if isinstance(value, PayloadType) else str(payload_type)
