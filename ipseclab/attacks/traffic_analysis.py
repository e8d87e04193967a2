"""traffic-analysis: what ESP leaves visible, endpoints and sizes, and what TFC padding hides.

ESP encrypts the payload, not the packet's shape. Transport mode keeps the original IP
header (RFC 4303 §3.1.1): who talks to whom is in the clear. Tunnel mode puts the inner
packet inside (§3.1.2): the outer header names only the gateways. Either way the length of
the ESP packet follows the length of the plaintext to within the cipher's block (16 bytes
for AES-CBC, 4 for GCM), which is enough to tell messages, pages or keystrokes apart.
Traffic Flow Confidentiality padding (RFC 4303 §2.4 and §2.7; ``tfcpad`` in ``ip xfrm
state``) pads every inner packet of a tunnel-mode SA to a fixed length and removes that
signal, at the price of bandwidth.

:func:`run` measures on the lab, from what mallory captures on its WAN interface: h1
sends messages of growing length to h2 through the gateways' tunnel; weak (no TFC padding)
leaks the length, recommended (``tfcpad 1024``) does not. Then the same capture in
transport mode (``traffic-analysis/transport``: h1 and h2 are their own endpoints, the
gateways only route): the outer header names h1 and h2 themselves, where tunnel mode shows
only gw1 -> gw2. In both modes the IP protocol mallory sees is 50 (ESP): the upper-layer
protocol sits in the encrypted Next Header field (§2.6), so it is the endpoints that
transport mode gives away, and the ports only to whoever can guess them from lengths and
timing. :func:`endpoints` makes the same comparison with the core alone (no lab);
:func:`plot_sizes` draws the numbers (matplotlib). The attack targets only the lab's own
hosts inside the topology's namespaces.
"""

from __future__ import annotations

import ipaddress
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
        hdr = ip.parse_inbound_header(wire)
        out[mode] = {"outer_src": str(hdr.src), "outer_dst": str(hdr.dst),
                     "length": str(len(wire))}
    return out


def measure(lab: Any, sizes: tuple[int, ...] = SIZES) -> list[tuple[int, int]]:
    """(message length, ESP packet length on the wire) for each message h1 sends to h2."""
    packets = capture(lab, sizes)
    return list(zip(sizes, (len(p) for p in packets), strict=False))


def capture(lab: Any, sizes: tuple[int, ...] = SIZES) -> list[bytes]:
    """The ESP packets mallory sees on its gw1 side while h1 sends ``sizes`` to h2."""
    sniffer = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", str(len(sizes)), "8")
    try:
        send_udp(lab, "h1", "h2", PORT, [bytes(n) for n in sizes], gap=0.03)
        return [bytes.fromhex(p) for p in sniffer.result()["packets"]]
    finally:
        sniffer.stop()


def seen(packets: list[bytes], source: str) -> dict[str, str]:
    """What the outer IPv4 headers of captured packets tell: endpoints and protocol."""
    if not packets:
        return {"outer_src": "", "outer_dst": "", "protocol": "", "source": source}
    pairs = sorted({(str(ipaddress.IPv4Address(p[12:16])), str(ipaddress.IPv4Address(p[16:20])),
                     p[9]) for p in packets})
    src, dst, proto = pairs[0]
    return {"outer_src": src, "outer_dst": dst, "protocol": str(proto),
            "length": str(len(packets[0])), "packets": str(len(packets)), "source": source}


def transport_capture(workdir: Path | None = None) -> dict[str, str]:
    """h1 -> h2 in transport mode (h1 and h2 their own endpoints): what mallory sees."""
    with maybe_lab(None, NAME, "transport", workdir) as lab:
        return seen(capture(lab, (SIZES[0],)), "capture")


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        sizes: tuple[int, ...] = SIZES) -> AttackResult:
    """Does the ESP length tell mallory the message length? And the mode the endpoints?

    With ``lab`` given (a running lab of ``config``) the transport-mode side of the
    comparison comes from the core (:func:`endpoints`), as a second lab cannot run beside it.
    """
    check_config(config)
    given = lab is not None
    with maybe_lab(lab, NAME, config, workdir) as lab:
        packets = capture(lab, sizes)
        settle(0.2)
        counters = sa_counters("gw2")
    points = list(zip(sizes, (len(p) for p in packets), strict=False))
    lengths = [w for _, w in points]
    distinct = len(set(lengths))
    ok = len(points) == len(sizes) and distinct == len(sizes)
    core = endpoints()
    modes = {"tunnel": seen(packets, "capture")}
    if given:
        modes["transport"] = {**core["transport"], "protocol": "50", "source": "core"}
    else:
        modes["transport"] = transport_capture(
            None if workdir is None else Path(f"{workdir}-transport"))
    table = ", ".join(f"{m}->{w}" for m, w in points)
    evidence = (f"message bytes -> ESP bytes seen by mallory: {table}\n"
                f"  {distinct} distinct lengths for {len(sizes)} messages: "
                + ("the length of each message shows through" if ok
                   else "every packet looks the same (TFC padding)")
                + f"\n  mallory's {modes['transport']['source']} of transport mode shows"
                f" {modes['transport']['outer_src']} -> {modes['transport']['outer_dst']}"
                f" (the hosts), protocol {modes['transport']['protocol']},"
                f" {modes['transport'].get('length', '?')} bytes for the {sizes[0]}-byte"
                " message (no inner header); its capture of"
                f" tunnel mode only {modes['tunnel']['outer_src']} ->"
                f" {modes['tunnel']['outer_dst']} (the gateways), protocol"
                f" {modes['tunnel']['protocol']}. ESP hides the upper protocol in both"
                " (Next Header is encrypted, RFC 4303 §2.6)")
    return AttackResult(NAME, config, ok, evidence,
                        details={"points": points, "endpoints": modes, "endpoints_core": core},
                        counters=counters)


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
