"""How SPD lookups scale with the number of policies (a gateway with many tunnels).

    .venv/bin/python benchmarks/spd_scale.py [--sizes 1 10 100 1000 4000] [--flows 256]

An SPD with N PROTECT policies, one per tunnel (10.1.0.0/16 to one /32 behind the peer
each, as many road warriors or site-to-site children make), and a stream of packets spread
over ``--flows`` flows to the tunnels. Printed per N: the time per lookup and its ratio to
the first N. A lookup that scans the policies in order (RFC 4301 §4.4.1) grows with N;
repeated flows hit the SPD's flow cache instead. Asserts nothing.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipseclab.ipsec.selectors import PacketFields, Selector  # noqa: E402
from ipseclab.ipsec.spd import SPD, Policy, Template  # noqa: E402

BASE = int(ipaddress.ip_address("10.2.0.0"))


def spd(n: int) -> SPD:
    table = SPD()
    for k in range(n):
        remote = str(ipaddress.ip_address(BASE + k))
        table.add(Policy(Selector.parse("10.1.0.0/16", f"{remote}/32"), "out", "protect",
                         templates=[Template("esp", "tunnel", ipaddress.ip_address("192.0.2.1"),
                                             ipaddress.ip_address("192.0.2.2"), reqid=k + 1)]))
    return table


def packets(n: int, flows: int, count: int) -> list[PacketFields]:
    rng = random.Random(1)
    pool = [PacketFields(4, int(ipaddress.ip_address("10.1.0.10")) + rng.randrange(200),
                         BASE + rng.randrange(n), 17, rng.randrange(1024, 65536), 53)
            for _ in range(flows)]
    return [pool[rng.randrange(flows)] for _ in range(count)]


def per_lookup(n: int, flows: int) -> float:
    table, stream = spd(n), packets(n, flows, 20000)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for fields in stream:
            table.lookup("out", fields)
        best = min(best, (time.perf_counter() - start) / len(stream))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000, 4000])
    ap.add_argument("--flows", type=int, default=256)
    a = ap.parse_args()
    print(f"SPD lookups, {a.flows} flows over N tunnels' policies")
    print(f"{'policies':>9}  {'per lookup':>11}  {'x first':>8}")
    first = None
    for n in a.sizes:
        t = per_lookup(n, a.flows)
        first = first or t
        print(f"{n:9d}  {t * 1e6:8.2f} us  {t / first:8.2f}")


if __name__ == "__main__":
    main()
