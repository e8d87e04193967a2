"""Making child SAs (RFC 7296 §1.3, §2.9, §2.17): the part of IKE_AUTH and CREATE_CHILD_SA
that is the same in both. A mixin of :class:`ipseclab.ike.ike_sa.IkeSa`, as the exchanges are.

Both exchanges carry a child SA in the same payloads, SA, TSi, TSr and
[N(USE_TRANSPORT_MODE)], and both sides treat them alike:

    initiator  offers   ESP proposals with its inbound SPI, and its selectors
    responder  chooses  a child config by its selectors, then one proposal (§2.7), and
                        narrows TSi and TSr to its own policy (§2.9); or refuses with
                        TS_UNACCEPTABLE or NO_PROPOSAL_CHOSEN and says why in ChildSaFailed
    initiator  checks   that the answer is a proposal it offered and selectors inside its
                        own; if not, it deletes what the responder installed (§2.9, §1.4.1)
    both       make     KEYMAT from SK_d, the nonces and, with PFS, g^ir (§2.17), the SA
                        pair, its rekey and lifetime timers, and a ChildSaEstablished or
                        ChildSaRekeyed event

IKE_AUTH offers its child SA without DH groups (there is no KE in IKE_AUTH, §1.2) and takes
KEYMAT from the IKE SA's own nonces; CREATE_CHILD_SA brings new nonces and maybe a KE
(§1.3.1, §1.3.3). swanctl's ``dynamic`` selector is resolved here (§2.19): our virtual IP
once we have one. What a child SA is, and the key derivation itself, are :mod:`.child`'s;
this module is the IKE SA's part: which config, which proposal, which selectors, and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ipseclab.crypto.proposals import Proposal
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ike import events, negotiation
from ipseclab.ike.child import DUPLICATE_WAIT, ChildSa, build_child_sas
from ipseclab.ike.config import ChildConfig
from ipseclab.ike.constants import ExchangeType, NotifyType, ProtocolId
from ipseclab.ike.payload_base import Payload
from ipseclab.ike.payloads import Delete, Notify, SecurityAssociation, TSi, TSr
from ipseclab.ike.sa_common import State
from ipseclab.ike.sa_common import find_payload as _find
from ipseclab.ike.sa_common import notify_name as _notify_name
from ipseclab.ipsec.selectors import narrow as _narrow

if TYPE_CHECKING:
    from ipseclab.ike.ike_sa import IkeSa

__all__ = ["ChildSaMaking"]

_INFO = ExchangeType.INFORMATIONAL


class ChildSaMaking:
    """Child SA making for IKE_AUTH and CREATE_CHILD_SA; mixed into :class:`IkeSa` (which
    holds the state)."""

    # -- the initiator's offer, and the IKE_AUTH initiator's check of the answer -----------

    def _child_offer(self: IkeSa) -> list[Payload]:
        """[N(USE_TRANSPORT_MODE)], SAi2, TSi, TSr of IKE_AUTH for our first child SA."""
        child = self.child_config
        if child is None:
            return []
        self._child_spi = self.engine.new_child_spi()
        inner: list[Payload] = []
        if child.mode == "transport":
            inner.append(Notify(NotifyType.USE_TRANSPORT_MODE))
        self._offered_ts = (child.selectors("local", self._dynamic("local")),
                            child.selectors("remote", self._dynamic("remote")))
        inner += [
            negotiation.sa_payload_for(negotiation.without_dh(child.proposals),
                                       child.protocol_id, self._child_spi.to_bytes(4, "big")),
            TSi(negotiation.selectors_to_wire(self._offered_ts[0])),
            TSr(negotiation.selectors_to_wire(self._offered_ts[1])),
        ]
        return inner

    def _dynamic(self: IkeSa, side: str) -> str:
        """What swanctl's ``dynamic`` TS means now (§2.19): our virtual IP once the gateway
        gave us one, everything while we still ask for one, else the IKE address. For the
        peer: the virtual IP we leased to it, else its IKE address."""
        if side == "remote":
            return self.remote_virtual_ips[0] if self.remote_virtual_ips else self.remote[0]
        if self.virtual_ips:
            return self.virtual_ips[0]
        config = self.config
        if config is not None and config.vips and self.state is not State.ESTABLISHED:
            return "0.0.0.0/0" if ":" not in config.vips[0] else "::/0"
        return self.local[0]

    def _finish_child_initiator(self: IkeSa, inner: list[Payload], notifies: list[Notify],
                                now: float) -> None:
        """The IKE_AUTH initiator takes the responder's SAr2, TSi and TSr only if they are a
        proposal it offered and selectors within its own (§2.9); else it deletes them."""
        child = self.child_config
        assert child is not None
        errors = [n for n in notifies if n.is_error]
        sa, tsi, tsr = _find(inner, SecurityAssociation), _find(inner, TSi), _find(inner, TSr)
        if errors or sa is None or tsi is None or tsr is None:
            notify = errors[0].notify_type if errors else NotifyType.INVALID_SYNTAX
            self._event(events.ChildSaFailed, now, child=child.name, notify=notify,
                        reason=f"responder answered {_notify_name(notify)}")
            return
        choice = negotiation.accept_choice(negotiation.without_dh(child.proposals), sa,
                                           child.protocol_id)
        local_ts = negotiation.selectors_from_wire(tsi.selectors)
        remote_ts = negotiation.selectors_from_wire(tsr.selectors)
        offered_local, offered_remote = self._offered_ts
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

    def _child_failed_after_auth_spi(self: IkeSa, config: ChildConfig, spi_in: int,
                                     notify: int, reason: str, now: float) -> None:
        """As :meth:`_child_failed_after_auth`, for the child SA whose inbound SPI is
        ``spi_in`` (what a CREATE_CHILD_SA initiator refuses after the fact)."""
        self._event(events.ChildSaFailed, now, child=config.name, notify=notify, reason=reason)
        self.request(_INFO, [Delete.child_sas(config.protocol_id, [spi_in.to_bytes(4, "big")])],
                     now, None)

    def _child_failed_after_auth(self: IkeSa, child: ChildConfig, notify: int,
                                 now: float) -> None:
        """The responder's child SA is unacceptable to us: report it and delete it (§2.9)."""
        self._event(events.ChildSaFailed, now, child=child.name, notify=notify,
                    reason="the responder's child SA is not what we proposed")
        # The responder has installed it: ask for its deletion (§1.4.1), by our inbound SPI.
        self.request(_INFO, [Delete.child_sas(child.protocol_id,
                                              [self._child_spi.to_bytes(4, "big")])], now, None)

    # -- the responder's choice (§2.7, §2.9) -----------------------------------------------

    def _negotiate_child(self: IkeSa, inner: list[Payload], notifies: list[Notify]
                         ) -> tuple[list[Payload], tuple | int | None]:
        """The responder's half of child SA creation in IKE_AUTH: (reply payloads, result).

        The result is the arguments of :meth:`_install_child`, an error notify type, or
        None when the initiator asked for no child SA.
        """
        if all(_find(inner, cls) is None for cls in (SecurityAssociation, TSi, TSr)):
            return [], None
        choice = self._choose_child(inner, notifies, pfs_group=None, only=None, ike_auth=True)
        if isinstance(choice, int):
            return [Notify(choice)], choice
        child, wire, proposal, local_ts, remote_ts, mode = choice
        spi_in = self.engine.new_child_spi()
        reply = self._child_answer(wire, proposal, spi_in, mode, local_ts, remote_ts)
        spi_out = int.from_bytes(wire.spi, "big")
        return reply, (child, proposal, spi_in, spi_out, mode, local_ts, remote_ts)

    def _child_answer(self: IkeSa, wire, proposal: Proposal, spi_in: int, mode: str,
                      local_ts: list, remote_ts: list, extra: Sequence[Payload] = ()
                      ) -> list[Payload]:
        """The responder's child SA payloads (§1.3.1, §2.9): [N(USE_TRANSPORT_MODE)], SA with
        the chosen proposal (its number as offered) and our SPI, ``extra`` (CREATE_CHILD_SA's
        Nr and KEr), then TSi and TSr narrowed, the initiator's side first."""
        reply: list[Payload] = []
        if mode == "transport":
            reply.append(Notify(NotifyType.USE_TRANSPORT_MODE))
        return [*reply,
                negotiation.sa_payload_for([proposal], wire.protocol_id,
                                           spi_in.to_bytes(4, "big"), [wire.number]),
                *extra,
                TSi(negotiation.selectors_to_wire(remote_ts)),
                TSr(negotiation.selectors_to_wire(local_ts))]

    def _choose_child(self: IkeSa, inner: list[Payload], notifies: list[Notify], *,
                      pfs_group: int | None, only: ChildConfig | None, ike_auth: bool
                      ) -> tuple | int:
        """Pick a child config, proposal and narrowed selectors for the initiator's SA, TSi
        and TSr (§2.7, §2.9): (config, wire proposal, proposal, local TS, remote TS, mode), or
        the error notify type to answer. ``only``: the config of the child SA being rekeyed.
        """
        config = self.config
        assert config is not None
        sa, tsi, tsr = _find(inner, SecurityAssociation), _find(inner, TSi), _find(inner, TSr)
        if sa is None or tsi is None or tsr is None:
            return NotifyType.INVALID_SYNTAX
        their_local = negotiation.selectors_from_wire(tsr.selectors)
        their_remote = negotiation.selectors_from_wire(tsi.selectors)
        offers: dict[int, list] = {}  # the initiator's proposals, by protocol (AH or ESP)
        wants_transport = any(n.notify_type == NotifyType.USE_TRANSPORT_MODE for n in notifies)
        # A config is found by its selectors first, then by its proposals (as strongSwan).
        failure: int = NotifyType.TS_UNACCEPTABLE
        for child in [only] if only is not None else config.children:
            local_ts = _narrow(their_local, child.selectors("local", self._dynamic("local")))
            remote_ts = _narrow(their_remote, child.selectors("remote",
                                                              self._dynamic("remote")))
            if not local_ts or not remote_ts:
                continue
            ours = negotiation.without_dh(child.proposals) if ike_auth else child.proposals
            theirs = offers.get(child.protocol_id)
            if theirs is None:
                theirs = negotiation.read_proposals(sa, child.protocol_id)
                if ike_auth:
                    theirs = [(w, negotiation.without_dh([p])[0]) for w, p in theirs]
                offers[child.protocol_id] = theirs
            choice = negotiation.choose_proposal(ours, theirs, pfs_group)
            if choice is None or len(choice[0].spi) != 4:
                failure = NotifyType.NO_PROPOSAL_CHOSEN
                continue
            if int.from_bytes(choice[0].spi, "big") < 256:
                return NotifyType.INVALID_SYNTAX
            mode = "transport" if wants_transport and child.mode == "transport" else "tunnel"
            return child, choice[0], choice[1], local_ts, remote_ts, mode
        return failure

    def _child_refusal(self: IkeSa, inner: list[Payload], *, only: ChildConfig | None,
                       ike_auth: bool) -> dict[str, str]:
        """For the ChildSaFailed of a request we refused: which child config it was meant for
        (those whose selectors fit, else all), what the peer asked for and what we allow."""
        config = self.config
        assert config is not None
        sa, tsi, tsr = _find(inner, SecurityAssociation), _find(inner, TSi), _find(inner, TSr)
        if sa is None or tsi is None or tsr is None:
            return {"child": only.name if only else ",".join(c.name for c in config.children)}
        their_local = negotiation.selectors_from_wire(tsr.selectors)
        their_remote = negotiation.selectors_from_wire(tsi.selectors)
        children = [only] if only is not None else config.children
        fitting = [c for c in children
                   if _narrow(their_local, c.selectors("local", self._dynamic("local")))
                   and _narrow(their_remote, c.selectors("remote", self._dynamic("remote")))]
        offered = [(name, negotiation.describe_offer(sa, number))
                   for name, number in (("ESP", ProtocolId.ESP), ("AH", ProtocolId.AH))]
        received = "; ".join([f"{name} proposals {text}" for name, text in offered
                              if text != "none"] or ["no ESP or AH proposals"])
        received += (f"; TSi {', '.join(map(str, their_remote))}; TSr"
                     f" {', '.join(map(str, their_local))}")
        ours = []
        for c in children:
            proposals = negotiation.without_dh(c.proposals) if ike_auth else c.proposals
            local = c.selectors("local", self._dynamic("local"))
            remote = c.selectors("remote", self._dynamic("remote"))
            ours.append(f"{c.name}: {c.protocol}_proposals {', '.join(map(str, proposals))};"
                        f" local_ts {', '.join(map(str, local))};"
                        f" remote_ts {', '.join(map(str, remote))}")
        configured = " | ".join(ours)
        return {"child": ",".join(c.name for c in fitting or children), "received": received,
                "configured": configured}

    # -- KEYMAT, the SA pair, timers and events (§2.17) ----------------------------------

    def _install_child(self: IkeSa, config: ChildConfig, proposal: Proposal, spi_in: int,
                       spi_out: int, mode: str, local_ts: list, remote_ts: list,
                       now: float) -> None:
        """The child SA of IKE_AUTH: KEYMAT from the IKE SA's own nonces (§2.17)."""
        child = self._make_child(config, proposal, spi_in, spi_out, mode, local_ts, remote_ts,
                                 ni=self.ni, nr=self.nr, g_ir=None, initiated=self.initiator,
                                 reqid=None, now=now)
        if child is not None:
            self._add_child(child, now)

    def _make_child(self: IkeSa, config: ChildConfig, proposal: Proposal, spi_in: int,
                    spi_out: int, mode: str, local_ts: list, remote_ts: list, *, ni: bytes,
                    nr: bytes, g_ir: bytes | None, initiated: bool, reqid: int | None,
                    now: float) -> ChildSa | None:
        """A child SA pair with its keys (KEYMAT, §2.17), or None after a ChildSaFailed.

        ``initiated``: we sent the request of the exchange, so our outbound SA takes the
        initiator-to-responder keys, whichever side began the IKE SA. A rekey keeps the
        old ``reqid``, so the SPD's templates find the new SAs.
        """
        duplicate = None
        if reqid is None:
            duplicate = self.engine._duplicate_child(self, config, local_ts, remote_ts)
            reqid = duplicate.reqid if duplicate is not None else self.engine.new_reqid()
        child = ChildSa(config, reqid, spi_in, spi_out, proposal, mode, local_ts, remote_ts,
                        initiated=initiated, nonces=(ni, nr))
        if duplicate is not None and not initiated:
            # The peer installs its inbound SA when our response arrives: send on the old
            # pair until it goes, as a rekey responder does (§2.8).
            child.outbound_ready, child.waits_for = False, duplicate
            child.wait_ends = now + DUPLICATE_WAIT
        try:
            tfc = config.tfc_padding
            build_child_sas(child, initiator=initiated, prf=self.suite.prf,  # type: ignore
                            sk_d=self.sk_d, ni=ni, nr=nr, local=self.local,
                            remote=self.remote, nat=self.nat_detected, g_ir=g_ir,
                            lifetime=config.volume_lifetime(self.engine.random_below),
                            tfc_padding=self.engine.mtu if tfc == "mtu" else int(tfc))
        except (ConfigError, IpsecLabError, ValueError) as error:
            self._event(events.ChildSaFailed, now, child=config.name,
                        notify=NotifyType.NO_PROPOSAL_CHOSEN, reason=str(error))
            return None
        return child

    def _add_child(self: IkeSa, child: ChildSa, now: float) -> None:
        """Keep ``child``, start its timers and report it (a rekey as ChildSaRekeyed)."""
        config = child.config
        self.children.append(child)
        if config.rekey_time:
            span = config.rekey_time / 10
            child.rekey_at = now + config.rekey_time - negotiation.jitter(self.engine.rng, span)
        child.expire_at = now + config.life_time if config.life_time else None
        old = child.replaces
        self._event(events.ChildSaRekeyed if old is not None else events.ChildSaEstablished,
                    now, connection=self.config.name,  # type: ignore[union-attr]
                    child=config.name, reqid=child.reqid, mode=child.mode,
                    proposal=str(child.proposal), inbound=child.inbound,
                    outbound=child.outbound, local_ts=child.local_ts,
                    remote_ts=child.remote_ts, selectors=child.selectors,
                    rekeys=(old.spi_in, old.spi_out) if old is not None else None,
                    outbound_ready=child.outbound_ready)
