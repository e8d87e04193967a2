"""How the IKE engine scales with the number of IKE SAs it holds (a load-testing lab).

    .venv/bin/python benchmarks/ike_scale.py [--sizes 100 500 2000] [--plot FILE.png]
                                             [--profile N]

One initiator engine and one responder engine, in memory (no sockets, no root), bring up N
IKE SAs one after the other, each with one child SA: the initiator knows N connections
``c0 .. c<N-1>`` to the same responder, each with its own child SA selectors (10.<k>/32
pairs), and the responder one connection with wide selectors that it narrows (§2.9). After
every datagram the receiving engine is asked :meth:`IkeEngine.get_timer`, as the gateway
does after every event. Then, with all N up, a little maintenance: 20 child SA rekeys, 5
IKE SA rekeys (§1.3.2, §1.3.3), and timers fired (``handle_timer``) at a time when nothing
is due, as a driver's wakeup does.

Printed per N, beside the first N as baseline (ratio): the time per IKE SA brought up
(both engines: IKE_SA_INIT + IKE_AUTH with the child SA), per ``get_timer()`` call, per
``handle_timer()`` call and per rekey. An engine that scans all its SAs per operation shows
a per-SA time growing with N (O(n^2) in total); one with indexes stays flat. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipseclab.ike import events  # noqa: E402
from ipseclab.ike.config import ChildConfig, IkeConfig  # noqa: E402
from ipseclab.ike.engine import IkeEngine  # noqa: E402

PROPOSAL = "aes128gcm16-prfsha256-x25519"
I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"
PSK = b"scale secret"


def selectors(k: int) -> tuple[str, str]:
    """A distinct /32 pair for tunnel ``k``: 10.1.x.y behind us, 10.2.x.y behind the peer."""
    return f"10.1.{k // 256 % 256}.{k % 256}/32", f"10.2.{k // 256 % 256}.{k % 256}/32"


def engines(n: int, seed: int = 0) -> tuple[IkeEngine, IkeEngine]:
    """The initiator with ``n`` connections, each with an identity of its own (as ``n``
    road warriors would be), the responder with one connection that takes them all. Each
    IKE_AUTH carries INITIAL_CONTACT (§2.4), so the responder looks for older IKE SAs of that
    identity every time (an index, not a scan)."""
    child = dict(mode="tunnel", esp_proposals="aes128gcm16")
    initiator = []
    for k in range(n):
        local, remote = selectors(k)
        initiator.append(IkeConfig(
            f"c{k}", local_addrs=[I_ADDR], remote_addrs=[R_ADDR], proposals=PROPOSAL,
            local_id=f"@moon{k}.example", remote_id="@sun.example", psk=PSK,
            children=[ChildConfig("net", local_ts=[local], remote_ts=[remote], **child)]))
    responder = IkeConfig(
        "site", local_addrs=[R_ADDR], remote_addrs=["%any"], proposals=PROPOSAL,
        local_id="@sun.example", remote_id="%any", psk=PSK,
        children=[ChildConfig("net", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"],
                              **child)])
    rng_i, rng_r = random.Random(seed), random.Random(seed + 1)
    return (IkeEngine(initiator, rng=rng_i.randbytes, cookie_threshold=None),
            IkeEngine(responder, rng=rng_r.randbytes, cookie_threshold=None))


def shuttle(i: IkeEngine, r: IkeEngine, now: float) -> int:
    """Carry datagrams both ways until quiet, asking the receiver for its timer after each
    one (what the gateway does); returns the number of get_timer() calls."""
    calls = 0
    while True:
        moved = False
        for sender, receiver in ((i, r), (r, i)):
            for data, src, dst in sender.datagrams_to_send():
                receiver.receive_datagram(data, src, dst, now)
                receiver.get_timer()
                calls += 1
                moved = True
        if not moved:
            return calls


def count(engine: IkeEngine, kind: type) -> int:
    n = 0
    while (event := engine.next_event()) is not None:
        n += isinstance(event, kind)
    return n


def run(n: int) -> dict[str, float]:
    """Bring up ``n`` IKE SAs, then rekey and fire timers a little; seconds per operation."""
    i, r = engines(n)
    now = 1000.0
    start = time.perf_counter()
    for k in range(n):
        i.initiate(f"c{k}", now)
        shuttle(i, r, now)
    up = time.perf_counter() - start
    if count(i, events.ChildSaEstablished) != n or count(r, events.ChildSaEstablished) != n:
        raise RuntimeError(f"not all {n} child SAs came up")
    if len(i.ike_sas) != n or len(r.ike_sas) != n:
        raise RuntimeError(f"expected {n} IKE SAs on each side")

    calls = 200
    start = time.perf_counter()
    for _ in range(calls):
        i.get_timer()
        r.get_timer()
    get_timer = (time.perf_counter() - start) / (2 * calls)

    start = time.perf_counter()
    for _ in range(calls):
        i.handle_timer(now)  # nothing due yet: a driver's wakeup that finds no work
        r.handle_timer(now)
    handle_timer = (time.perf_counter() - start) / (2 * calls)

    reqids = sorted({c.reqid for sa in i.ike_sas for c in sa.children})
    names = [sa.name for sa in i.ike_sas]
    step = max(1, n // 20)
    start = time.perf_counter()
    rekeys = 0
    for reqid in reqids[::step][:20]:
        rekeys += i.rekey_child_sa(reqid, now)
        shuttle(i, r, now)
    for name in names[::max(1, n // 5)][:5]:
        rekeys += i.rekey_ike_sa(name, now)
        shuttle(i, r, now)
    rekey = (time.perf_counter() - start) / max(rekeys, 1)
    if i.internal_errors or r.internal_errors:
        raise RuntimeError(f"engine errors: {i.internal_errors + r.internal_errors}")
    return {"n": n, "per_sa": up / n, "get_timer": get_timer, "handle_timer": handle_timer,
            "rekey": rekey}


def report(rows: list[dict[str, float]]) -> None:
    base = rows[0]
    print(f"{'IKE SAs':>8} {'per SA up':>11} {'x':>6} {'get_timer':>11} {'x':>6}"
          f" {'handle_timer':>13} {'x':>6} {'per rekey':>11} {'x':>6}")
    for row in rows:
        cells = []
        for key in ("per_sa", "get_timer", "handle_timer", "rekey"):
            width = 13 if key == "handle_timer" else 11
            cells.append(f"{row[key] * 1e6:>{width - 3}.1f} us {row[key] / base[key]:>6.2f}")
        print(f"{int(row['n']):>8} " + " ".join(cells))
    print(f"(x: ratio to N={int(base['n'])}; flat ratios mean O(1) per operation)")


def plot(rows: list[dict[str, float]], path: str) -> None:
    """Time per IKE SA brought up and per get_timer() call against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [row["n"] for row in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ns, [row["per_sa"] * 1e3 for row in rows], "o-", label="per IKE SA brought up")
    ax.plot(ns, [row["get_timer"] * 1e3 for row in rows], "s-", label="per get_timer() call")
    ax.set_xlabel("IKE SAs in the engine (N)")
    ax.set_ylabel("ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("IkeEngine: cost per operation vs number of IKE SAs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--plot", metavar="FILE", help="also draw time per SA vs N (PNG)")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="cProfile one run with N IKE SAs instead")
    args = parser.parse_args(argv)
    if args.profile:
        import cProfile
        import pstats

        with cProfile.Profile() as prof:
            run(args.profile)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return []
    run(20)  # warm-up: imports, caches
    rows = [run(n) for n in args.sizes]
    report(rows)
    if args.plot:
        plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
