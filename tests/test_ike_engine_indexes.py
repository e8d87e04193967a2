"""The IKE engine's indexes (inbound SPIs, reqids, selectors, owners, names, the timer heap)
never drift from what a full scan of its IKE SAs computes.

Two engines are driven through seeded random sequences of operations: initiations, child SA
and IKE SA rekeys (§1.3.2, §1.3.3), reauthentications (§2.8.3), deletes (§1.4.1), lost
datagrams and timers; after every step ``IkeEngine.check_indexes`` compares each index to a
scan. Plus: allocating inbound SPIs never hands out one in use, even when the random source
offers it.
"""

from __future__ import annotations

import random

import pytest

from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.engine import IkeEngine

I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"
PROPOSAL = "aes128gcm16-prfsha256-x25519"
CONNECTIONS = 6


def engines(seed: int, *, make_before_break: bool = True) -> tuple[IkeEngine, IkeEngine]:
    """An initiator with a few connections (distinct selectors, short timers, some with
    reauthentication) and a responder with one connection that narrows to each."""
    configs = []
    for k in range(CONNECTIONS):
        child = ChildConfig("net", local_ts=[f"10.1.0.{k}/32"], remote_ts=[f"10.2.0.{k}/32"],
                            esp_proposals="aes128gcm16", rekey_time=40.0, life_time=60.0)
        configs.append(IkeConfig(
            f"c{k}", local_addrs=[I_ADDR], remote_addrs=[R_ADDR], proposals=PROPOSAL,
            local_id="@moon.example", remote_id="@sun.example", psk=b"index secret",
            send_initial_contact=k == 0, rekey_time=90.0,
            reauth_time=150.0 if k % 2 else 0.0, dpd_delay=25.0 if k % 3 == 0 else 0.0,
            children=[child]))
    responder = IkeConfig(
        "site", local_addrs=[R_ADDR], remote_addrs=["%any"], proposals=PROPOSAL,
        local_id="@sun.example", remote_id="@moon.example", psk=b"index secret",
        children=[ChildConfig("net", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"],
                              esp_proposals="aes128gcm16", rekey_time=50.0,
                              life_time=70.0)])
    rng_i, rng_r = random.Random(seed), random.Random(seed + 1000)
    return (IkeEngine(configs, rng=rng_i.randbytes, cookie_threshold=None,
                      make_before_break=make_before_break),
            IkeEngine(responder, rng=rng_r.randbytes, cookie_threshold=None,
                      make_before_break=make_before_break))


class Run:
    """Two engines, a clock and a random source of operations; checks after each step."""

    def __init__(self, seed: int, *, make_before_break: bool = True) -> None:
        self.i, self.r = engines(seed, make_before_break=make_before_break)
        self.random = random.Random(seed)
        self.now = 1000.0
        self.loss = 0.0

    def check(self) -> None:
        for engine in (self.i, self.r):
            engine.check_indexes()
            assert not engine.internal_errors, engine.internal_errors
            while engine.next_event() is not None:
                pass

    def carry(self) -> None:
        """Datagrams both ways until quiet; some are lost when ``loss`` is set."""
        for _ in range(40):
            moved = False
            for sender, receiver in ((self.i, self.r), (self.r, self.i)):
                for data, src, dst in sender.datagrams_to_send():
                    moved = True
                    if self.random.random() >= self.loss:
                        receiver.receive_datagram(data, src, dst, self.now)
                        receiver.check_indexes()
            if not moved:
                return

    def step(self) -> str:
        i, r, pick = self.i, self.r, self.random
        side = pick.choice((i, r))
        sas = side.ike_sas
        reqids = sorted({c.reqid for sa in sas for c in sa.children})
        choice = pick.choice(["initiate", "initiate", "rekey_child", "rekey_ike", "reauth",
                              "delete_child", "delete_ike", "timer", "timer", "time", "lossy"])
        if choice == "initiate":
            i.initiate(f"c{pick.randrange(CONNECTIONS)}", self.now)
        elif choice == "rekey_child" and reqids:
            side.rekey_child_sa(pick.choice(reqids), self.now)
        elif choice == "rekey_ike" and sas:
            side.rekey_ike_sa(pick.choice(sas).name, self.now)
        elif choice == "reauth" and sas:
            side.reauthenticate_ike_sa(pick.choice(sas).name, self.now)
        elif choice == "delete_child" and reqids:
            side.delete_child_sa(pick.choice(reqids), self.now)
        elif choice == "delete_ike" and sas:
            side.delete_ike_sa(pick.choice(sas).name, self.now)
        elif choice == "timer":
            times = [t for t in (i.get_timer(), r.get_timer()) if t is not None]
            if times:
                self.now = max(self.now, min(times))
                i.handle_timer(self.now)
                r.handle_timer(self.now)
        elif choice == "time":
            self.now += pick.uniform(0.0, 20.0)
            i.handle_timer(self.now)
            r.handle_timer(self.now)
        elif choice == "lossy":
            self.loss = 0.3 if self.loss == 0.0 else 0.0
        self.check()
        self.carry()
        self.check()
        return choice


@pytest.mark.parametrize("seed", range(12))
def test_indexes_equal_a_full_scan_after_every_step(seed: int) -> None:
    run = Run(seed, make_before_break=seed % 3 != 2)
    done = {run.step() for _ in range(120)}
    assert {"initiate", "timer"} <= done
    # The sequences did make and lose SAs, so the indexes had something to follow.
    assert run.i.new_reqid() > 3


def test_indexes_follow_a_long_run_of_timers_alone() -> None:
    """Bring up every connection, then let rekeys, reauthentications, DPD and lifetimes run
    for a while with no other input."""
    run = Run(99)
    for k in range(CONNECTIONS):
        run.i.initiate(f"c{k}", run.now)
        run.carry()
        run.check()
    end = run.now + 600.0
    while (times := [t for t in (run.i.get_timer(), run.r.get_timer()) if t is not None]):
        if min(times) > end:
            break
        run.now = min(times)
        run.i.handle_timer(run.now)
        run.r.handle_timer(run.now)
        run.check()
        run.carry()
        run.check()
    assert run.i.ike_sas and all(sa.children for sa in run.i.ike_sas)


def test_new_child_spi_skips_spis_in_use_even_when_offered() -> None:
    run = Run(7)
    for k in range(CONNECTIONS):
        run.i.initiate(f"c{k}", run.now)
        run.carry()
    used = sorted(c.spi_in for sa in run.i.ike_sas for c in sa.children)
    assert len(used) == CONNECTIONS
    fresh = max(used) + 1 if max(used) < 2**32 - 1 else 256
    while fresh in used:
        fresh += 1
    # A random source that offers every SPI in use (and one below 256) before a free one.
    offers = iter([5, *used, fresh])
    run.i.rng = lambda n: next(offers).to_bytes(n, "big")
    assert run.i.new_child_spi() == fresh


def test_inbound_spis_never_collide_across_many_child_sas() -> None:
    """Hundreds of child SAs from a random source with only 2^10 values: every inbound SPI
    of the engine stays distinct."""
    i, r = engines(3)
    small = random.Random(3)
    base = int.from_bytes(random.Random(4).randbytes(4), "big") | 256
    real = i.rng

    def rng(n: int) -> bytes:
        if n == 4:  # SPIs from a small range: collisions are offered often
            return ((base + small.randrange(1024)) % 2**32).to_bytes(4, "big")
        return real(n)  # type: ignore[misc]

    i.rng = rng
    run = Run(3)
    run.i, run.r = i, r
    for _ in range(30):
        i.initiate(f"c{small.randrange(CONNECTIONS)}", run.now)
        run.carry()
    for _ in range(300):
        reqids = sorted({c.reqid for sa in i.ike_sas for c in sa.children})
        i.rekey_child_sa(small.choice(reqids), run.now)
        run.carry()
        spis = [c.spi_in for sa in i.ike_sas for c in sa.children]
        assert len(spis) == len(set(spis))
    run.check()
