"""sweet32: the birthday bound of 64-bit block ciphers (3DES) under one long-lived SA.

In CBC mode two equal ciphertext blocks C_i = C_j reveal P_i XOR P_j = C_(i-1) XOR C_(j-1).
With n-bit blocks a collision is expected after about 2^(n/2) blocks: for 3DES's 64-bit
blocks that is 2^32 blocks, 32 GiB, an afternoon of traffic through one SA without a byte
lifetime; for AES's 128-bit blocks 2^64 blocks, out of reach (Bhargavan and Leurent, "On
the Practical (In-)Security of 64-bit Block Ciphers", CCS 2016; RFC 8221 §5 demotes 3DES
for ESP; a byte lifetime, RFC 4301 §4.4.2.1, bounds what one SA carries).
:func:`collision_probability` and :func:`plot_collision_probability` give the curve.

What the lab can show honestly: 2^32 blocks are too many for a test. :func:`run` sends a
few hundred kilobytes through a 3DES SA (weak) or an AES-GCM SA (recommended); mallory
records the ESP packets and counts collisions of the first 24 bits of the ciphertext
blocks, a block space deliberately reduced to 2^24 so that the birthday law shows in
seconds. The measured count is compared with the law for 24 bits and then scaled to the
real block size. The attack "succeeds" when the scaled data volume for a 50% chance of a
real block collision is below 1 TiB (Sweet32 used 785 GB) and the SA has no byte limit: true
for 3DES, false for AES. No plaintext is recovered in the lab; the evidence says so.
The attack targets only the lab's own hosts inside the topology's namespaces.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import (
    AttackResult,
    NodeTool,
    check_config,
    maybe_lab,
    run_tool,
    sa_counters,
    settle,
)
from ipseclab.attacks.inet import parse_esp

NAME = "sweet32"
WEAK = "weak"  # 3des-sha1, no byte limit
RECOMMENDED = "recommended"  # aes128gcm16
PORT = 9005
TRUNCATED_BITS = 24
FEASIBLE_BYTES = 1 << 40  # 1 TiB through one SA: hours on a fast link


def collision_probability(data_bytes: float, block_bits: int = 64) -> float:
    """P(at least two equal blocks) after ``data_bytes`` of ciphertext, by the birthday
    approximation 1 - exp(-n(n-1) / 2^(b+1)), n = data / block size."""
    n = data_bytes / (block_bits / 8)
    return -math.expm1(-n * max(n - 1, 0) / 2 ** (block_bits + 1))


def bytes_for_probability(p: float, block_bits: int = 64) -> float:
    """Ciphertext bytes after which a collision has probability ``p``."""
    n = math.sqrt(2 ** (block_bits + 1) * -math.log1p(-p))
    return n * block_bits / 8


def expected_collisions(blocks: int, bits: int) -> float:
    """Expected number of colliding pairs among ``blocks`` random ``bits``-bit values."""
    return blocks * (blocks - 1) / 2 / 2 ** bits


def count_collisions(blocks: list[bytes], bits: int = TRUNCATED_BITS) -> int:
    """Pairs of blocks equal in their first ``bits`` bits."""
    nbytes = bits // 8
    counts = Counter(b[:nbytes] for b in blocks)
    return sum(c * (c - 1) // 2 for c in counts.values())


def ciphertext_blocks(packets: list[bytes], block: int, icv: int,
                      skip: int = 0) -> list[bytes]:
    """The ciphertext blocks of captured ESP packets: CBC with its IV (C_0), ``skip`` bytes
    of a counter-mode IV left out (GCM's explicit IV is a counter, not ciphertext)."""
    out = []
    for p in packets:
        body = parse_esp(p).body
        data = body[skip:-icv] if icv else body[skip:]
        out += [data[i:i + block] for i in range(0, len(data) - block + 1, block)]
    return out


def plot_collision_probability(path: str | Path | None = None, max_log2_bytes: int = 72):
    """P(collision) against bytes under one SA, 64-bit and 128-bit blocks; the figure."""
    # A Figure of its own, without pyplot: no backend is switched, no window opened, and a
    # notebook shows it with display(fig).
    from matplotlib.figure import Figure

    xs = [2 ** (e / 4) for e in range(20 * 4, max_log2_bytes * 4 + 1)]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for bits, label in ((64, "3DES, Blowfish (64-bit blocks)"), (128, "AES (128-bit blocks)")):
        ax.plot(xs, [collision_probability(x, bits) for x in xs], label=label)
    ax.set_xscale("log", base=2)
    ax.axvline(FEASIBLE_BYTES, linestyle=":", color="grey")
    ax.set_xlabel("ciphertext bytes under one SA")
    ax.set_ylabel("P(two equal ciphertext blocks)")
    ax.set_title("The birthday bound (Sweet32)")
    ax.legend()
    if path is not None:
        fig.savefig(path)
    return fig


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        packets: int = 300, size: int = 1000) -> AttackResult:
    """Send ``packets`` x ``size`` bytes h1 -> h2; count 24-bit block collisions on mallory."""
    check_config(config)
    packets = max(10, min(packets, 2000))
    with maybe_lab(lab, NAME, config, workdir) as lab:
        sniffer = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", str(packets), "15",
                           "--dst", "198.51.100.2", timeout=20)
        try:
            run_tool(lab, "h1", "services", "blast", lab.address("h2"), str(PORT),
                     str(packets), str(size), timeout=20)
            captured = [bytes.fromhex(h) for h in sniffer.result()["packets"]]
        finally:
            sniffer.stop()
        settle(0.2)
        counters = sa_counters("gw2")
    block_bits = 64 if config == WEAK else 128
    block, icv, skip = (8, 12, 0) if config == WEAK else (16, 16, 8)
    blocks = ciphertext_blocks(captured, block, icv, skip)
    seen = count_collisions(blocks)
    expected = expected_collisions(len(blocks), TRUNCATED_BITS)
    half = bytes_for_probability(0.5, block_bits)
    law_holds = expected > 0 and 0.3 * expected <= seen <= 3 * expected + 3
    ok = half <= FEASIBLE_BYTES and law_holds
    details = {"packets": len(captured), "blocks": len(blocks), "block_bits": block_bits,
               "collisions_24bit": seen, "expected_24bit": round(expected, 2),
               "bytes_for_50_percent": half,
               "probability_at_1TiB": collision_probability(FEASIBLE_BYTES, block_bits)}
    evidence = (f"{len(blocks)} ciphertext blocks captured; {seen} pairs equal in their first"
                f" {TRUNCATED_BITS} bits (the birthday law expects {expected:.1f}): the law"
                f" {'holds' if law_holds else 'does not fit'} in the reduced block space.\n"
                f"  Scaled to {block_bits}-bit blocks: 50% chance of a real collision after"
                f" {half / 2**30:.3g} GiB under one SA"
                f" ({'feasible: this SA has no byte limit' if ok else 'out of reach'}).\n"
                f"  (The lab shows the statistics, not a recovered plaintext: 2^32 blocks"
                f" are too many for it.)")
    return AttackResult(NAME, config, ok, evidence, details=details, counters=counters)
