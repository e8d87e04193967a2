"""The lab's own little services, run inside host namespaces by the attacks.

    python -m ipseclab.attacks.services listen PORT SECONDS [COUNT]
    python -m ipseclab.attacks.services send DST PORT SPORT GAP HEX [HEX ...]
    python -m ipseclab.attacks.services blast DST PORT COUNT SIZE

``listen`` is the victim's service: a UDP server that records every datagram it gets (a
"command counter": each datagram is one command carried out). ``send`` is the honest user,
sending messages from a fixed source port. Both print ``ready`` and then one JSON line.
"""

from __future__ import annotations

import select
import socket
import time

from ipseclab.attacks._tool import fail, ready, run, serve


def listen(port: int, seconds: float, count: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    start = time.monotonic()

    def work(result: dict) -> None:
        got: list[dict] = result.setdefault("messages", [])
        ready()
        while len(got) < count:
            left = start + seconds - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            data, addr = sock.recvfrom(65535)
            got.append({"from": addr[0], "sport": addr[1], "data": data.hex()})

    serve(work, start)
    sock.close()


def send(dst: str, port: int, sport: int, gap: float, messages: list[bytes]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", sport))
    start = time.monotonic()

    def work(result: dict) -> None:
        ready()
        for message in messages:
            sock.sendto(message, (dst, port))
            time.sleep(gap)
        result["sent"] = len(messages)

    serve(work, start)
    sock.close()


def blast(dst: str, port: int, count: int, size: int) -> None:
    """``count`` datagrams of ``size`` bytes each (a counter and zeros), back to back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()

    def work(result: dict) -> None:
        ready()
        for i in range(count):
            sock.sendto(i.to_bytes(4, "big") + bytes(max(0, size - 4)), (dst, port))
            if i % 50 == 49:
                time.sleep(0.01)
        result["sent"] = count

    serve(work, start)
    sock.close()


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        fail(__doc__ or "")
    if argv[0] == "listen":
        listen(int(argv[1]), float(argv[2]), int(argv[3]) if len(argv) > 3 else 1 << 30)
    elif argv[0] == "send":
        send(argv[1], int(argv[2]), int(argv[3]), float(argv[4]),
             [bytes.fromhex(h) for h in argv[5:]])
    elif argv[0] == "blast":
        blast(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        fail(f"unknown command {argv[0]}")


if __name__ == "__main__":
    run(main, __doc__ or "")
