"""The attacker's tools, run inside mallory's namespace (never in the machine's own).

    python -m ipseclab.attacks.mallory sniff IFACE PROTO COUNT SECONDS [--dst A] [--hold]
    python -m ipseclab.attacks.mallory inject HEX [HEX ...]
    python -m ipseclab.attacks.mallory forward 0|1

``sniff`` collects up to COUNT IPv4 packets of IP protocol PROTO that arrive on IFACE
(an AF_PACKET socket: it sees frames before the router forwards them), for at most SECONDS.
``--hold`` first stops mallory forwarding, so the captured packets never reach the peer:
an attacker on the path can drop as easily as read. ``inject`` sends whole IPv4 packets
(header included, source address as given) with a raw socket; the kernel routes them.
Every command prints ``ready`` and then one JSON line.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from pathlib import Path

from ipseclab.attacks._tool import fail, ready, run, serve

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def set_forwarding(on: bool) -> None:
    FORWARD.write_text("1\n" if on else "0\n")


def sniff(iface: str, proto: int, count: int, seconds: float, dst: str | None = None,
          hold: bool = False) -> None:
    want_dst = ipaddress.ip_address(dst).packed if dst else None
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((iface, ETH_P_IP))
    if hold:
        set_forwarding(False)
    start = time.monotonic()

    def work(result: dict) -> None:
        packets: list[str] = result.setdefault("packets", [])
        ready()
        deadline = start + seconds
        while len(packets) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            data, addr = sock.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING or len(data) < 20 or data[9] != proto:
                continue
            if want_dst is not None and data[16:20] != want_dst:
                continue
            length = int.from_bytes(data[2:4], "big")
            packets.append(data[:length].hex())

    serve(work, start)
    sock.close()


def inject(packets: list[bytes]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    start = time.monotonic()

    def work(result: dict) -> None:
        ready()
        for packet in packets:
            sock.sendto(packet, (str(ipaddress.ip_address(packet[16:20])), 0))
            time.sleep(0.02)
        result["sent"] = len(packets)

    serve(work, start)
    sock.close()


def main(argv: list[str]) -> None:
    if not argv:
        fail(__doc__ or "")
    command, args = argv[0], argv[1:]
    if command == "sniff":
        hold = "--hold" in args
        dst = args[args.index("--dst") + 1] if "--dst" in args else None
        iface, proto, count, seconds = args[0], int(args[1]), int(args[2]), float(args[3])
        sniff(iface, proto, count, seconds, dst, hold)
    elif command == "inject":
        inject([bytes.fromhex(h) for h in args])
    elif command == "forward":
        start = time.monotonic()
        set_forwarding(args[0] == "1")

        def work(result: dict) -> None:
            ready()
            result["forwarding"] = args[0] == "1"

        serve(work, start)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    run(main, __doc__ or "")
