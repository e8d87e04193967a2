"""traffic-analysis: what ESP leaves visible, endpoints and sizes, and what TFC padding hides.

ESP encrypts the payload, not the packet's shape. Transport mode keeps the original IP
header (RFC 4303 §3.1.1): who talks to whom is in the clear. Tunnel mode puts the inner
packet inside (§3.1.2): the outer header names only the gateways. Either way the length of
the ESP packet follows the length of the plaintext to within the cipher's block (16 bytes
for AES-CBC, 4 for GCM), which is enough to tell messages, pages or keystrokes apart.
Traffic Flow Confidentiality padding (RFC 4303 §2.4 and §2.7; ``tfcpad`` in ``ip xfrm
state``) pads every inner packet of a tunnel-mode SA to a fixed length and removes that
signal, at the price of bandwidth.

:func:`endpoints` compares the modes with ipseclab's core (no lab needed); :func:`run`
measures sizes on the lab: h1 sends messages of growing length to h2, mallory records the
ESP lengths; weak (no TFC padding) leaks the length, recommended (``tfcpad 1024``) does not.
:func:`plot_sizes` draws the numbers (matplotlib). The attack targets only the lab's own
hosts inside the topology's namespaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipseclab.attacks.common import (
    AttackResult,
    NodeTool,
    check_config,
    maybe_lab,
    sa_counters,
    send_udp,
    settle,
)

NAME = "traffic-analysis"
WEAK = "weak"  # aes128gcm16, tunnel mode, no TFC padding
RECOMMENDED = "recommended"  # the same with tfcpad 1024
PORT = 9004
SIZES = (8, 40, 100, 200, 400, 800)


def endpoints() -> dict[str, dict[str, str]]:
    """Outer addresses of one h1 -> h2 packet in transport and in tunnel mode (core only)."""
    import os

    from ipseclab.crypto import transforms
    from ipseclab.ipsec import esp, ip
    from ipseclab.ipsec.sa import SecurityAssociation

    enc = transforms.encryption("aes128gcm16")
    inner = ip.ip_header(ip.as_address("10.1.0.10"), ip.as_address("10.2.0.10"), 17, 8 + 5) \
        + b"\x9c\x40\x23\x28\x00\x0d\x00\x00hello"
    out = {}
    for mode, src, dst in (("transport", "10.1.0.10", "10.2.0.10"),
                           ("tunnel", "192.0.2.1", "198.51.100.2")):
        sa = SecurityAssociation(spi=0x5001, src=src, dst=dst, mode=mode, encryption=enc,
                                 encryption_key=os.urandom(enc.keymat_size))
        wire = esp.encapsulate(sa, inner)
        hdr = ip.parse_header(wire)
        out[mode] = {"outer_src": str(hdr.src), "outer_dst": str(hdr.dst),
                     "length": str(len(wire))}
    return out


def measure(lab: Any, sizes: tuple[int, ...] = SIZES) -> list[tuple[int, int]]:
    """(message length, ESP packet length on the wire) for each message h1 sends to h2."""
    sniffer = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", str(len(sizes)), "8",
                       "--dst", "198.51.100.2")
    try:
        send_udp(lab, "h1", "h2", PORT, [bytes(n) for n in sizes], gap=0.03)
        packets = sniffer.result()["packets"]
    finally:
        sniffer.stop()
    return list(zip(sizes, (len(p) // 2 for p in packets), strict=False))


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        sizes: tuple[int, ...] = SIZES) -> AttackResult:
    """Does the ESP length tell mallory the message length?"""
    check_config(config)
    with maybe_lab(lab, NAME, config, workdir) as lab:
        points = measure(lab, sizes)
        settle(0.2)
        counters = sa_counters("gw2")
    lengths = [w for _, w in points]
    distinct = len(set(lengths))
    ok = len(points) == len(sizes) and distinct == len(sizes)
    modes = endpoints()
    table = ", ".join(f"{m}->{w}" for m, w in points)
    evidence = (f"message bytes -> ESP bytes seen by mallory: {table}\n"
                f"  {distinct} distinct lengths for {len(sizes)} messages: "
                + ("the length of each message shows through" if ok
                   else "every packet looks the same (TFC padding)")
                + f"\n  transport mode shows {modes['transport']['outer_src']} ->"
                f" {modes['transport']['outer_dst']}, tunnel mode only"
                f" {modes['tunnel']['outer_src']} -> {modes['tunnel']['outer_dst']}")
    return AttackResult(NAME, config, ok, evidence,
                        details={"points": points, "endpoints": modes}, counters=counters)


def plot_sizes(series: dict[str, list[tuple[int, int]]], path: str | Path | None = None):
    """ESP length against message length, one line per configuration; returns the figure."""
    # A Figure of its own, without pyplot: no backend is switched, no window opened, and a
    # notebook shows it with display(fig).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for label, points in series.items():
        ax.plot([m for m, _ in points], [w for _, w in points], marker="o", label=label)
    ax.set_xlabel("message length (bytes)")
    ax.set_ylabel("ESP packet on the wire (bytes)")
    ax.set_title("What an on-path observer learns from lengths")
    ax.legend()
    if path is not None:
        fig.savefig(path)
    return fig
