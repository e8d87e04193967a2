"""SA lifetimes (RFC 4301 §4.4.2.1): soft/hard byte, packet and time limits, each once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.errors import ConfigError
from ipseclab.ipsec.lifetime import (
    Lifetime,
    LifetimeEvent,
    LifetimeKind,
    LifetimeLimit,
    LifetimeTracker,
)

SOFT, HARD = LifetimeKind.SOFT, LifetimeKind.HARD
BYTES, PACKETS, SECONDS = LifetimeLimit.BYTES, LifetimeLimit.PACKETS, LifetimeLimit.SECONDS


def kinds(events: list[LifetimeEvent]) -> list[tuple[LifetimeKind, LifetimeLimit]]:
    return [(e.kind, e.limit) for e in events]


def test_unlimited() -> None:
    t = LifetimeTracker(Lifetime(), created=100.0)
    for i in range(1000):
        assert t.account(1500, 100.0 + i) == []
    assert t.poll(1e12) == []
    assert t.next_deadline() is None
    assert not t.expired
    assert (t.bytes, t.packets) == (1_500_000, 1000)


def test_bytes_soft_then_hard_once_each() -> None:
    t = LifetimeTracker(Lifetime(soft_bytes=3000, hard_bytes=5000), created=0.0)
    assert t.account(1000, 1.0) == []
    assert t.account(1000, 2.0) == []
    events = t.account(1000, 3.0)
    assert events == [LifetimeEvent(SOFT, BYTES, 3000, 3.0)]
    assert t.soft_expired and not t.expired
    assert t.account(1000, 4.0) == []
    assert kinds(t.account(1000, 5.0)) == [(HARD, BYTES)]
    assert t.expired
    assert t.account(1000, 6.0) == []
    assert t.poll(7.0) == []


def test_packets() -> None:
    t = LifetimeTracker(Lifetime(soft_packets=2, hard_packets=3), created=0.0)
    assert t.account(1, 0.0) == []
    assert kinds(t.account(1, 0.0)) == [(SOFT, PACKETS)]
    assert kinds(t.account(1, 0.0)) == [(HARD, PACKETS)]
    assert t.account(1, 0.0) == []


def test_one_step_crosses_soft_and_hard() -> None:
    t = LifetimeTracker(Lifetime(soft_bytes=100, hard_bytes=200), created=0.0)
    assert kinds(t.account(9000, 1.0)) == [(SOFT, BYTES), (HARD, BYTES)]
    assert t.expired


def test_time_limits_poll_and_deadline() -> None:
    t = LifetimeTracker(Lifetime(soft_seconds=3600, hard_seconds=4000), created=1000.0)
    assert t.next_deadline() == 4600.0
    assert t.poll(4599.9) == []
    assert t.poll(4600.0) == [LifetimeEvent(SOFT, SECONDS, 3600, 4600.0)]
    assert t.next_deadline() == 5000.0
    assert t.poll(4700.0) == []
    assert kinds(t.poll(5001.0)) == [(HARD, SECONDS)]
    assert t.next_deadline() is None
    assert t.expired
    assert t.poll(9999.0) == []


def test_account_notices_time_too() -> None:
    t = LifetimeTracker(Lifetime(hard_seconds=10), created=0.0)
    assert t.account(100, 9.0) == []
    assert kinds(t.account(100, 10.0)) == [(HARD, SECONDS)]
    assert t.poll(11.0) == []


def test_mixed_limits_each_reported() -> None:
    life = Lifetime(soft_bytes=1000, hard_bytes=2000, soft_packets=5, hard_packets=50,
                    soft_seconds=30, hard_seconds=60)
    t = LifetimeTracker(life, created=0.0)
    assert kinds(t.account(1000, 1.0)) == [(SOFT, BYTES)]
    for _ in range(3):
        assert t.account(1, 2.0) == []
    assert kinds(t.account(1, 2.0)) == [(SOFT, PACKETS)]
    assert t.next_deadline() == 30.0
    assert kinds(t.poll(31.0)) == [(SOFT, SECONDS)]
    assert kinds(t.account(1000, 32.0)) == [(HARD, BYTES)]
    assert t.expired
    assert t.next_deadline() == 60.0
    assert kinds(t.poll(60.0)) == [(HARD, SECONDS)]


def test_lifetime_validation() -> None:
    with pytest.raises(ConfigError):
        Lifetime(soft_bytes=10, hard_bytes=5)
    with pytest.raises(ConfigError):
        Lifetime(hard_seconds=-1)
    Lifetime(soft_packets=5, hard_packets=5)


def test_repr_and_str() -> None:
    t = LifetimeTracker(Lifetime(hard_packets=1), created=0.0)
    (event,) = t.account(64, 2.5)
    assert str(event) == "hard packets limit 1 reached at 2.5"
    assert repr(t) == "LifetimeTracker(bytes=64, packets=1, created=0, expired=True)"


LIMIT = st.one_of(st.none(), st.integers(0, 5000))


@settings(max_examples=150, deadline=None)
@given(
    limits=st.tuples(LIMIT, LIMIT, LIMIT, LIMIT, LIMIT, LIMIT),
    steps=st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 200), st.booleans()),
                   max_size=60),
)
def test_each_event_exactly_once_at_the_right_moment(
    limits: tuple[int | None, ...], steps: list[tuple[int, int, bool]]
) -> None:
    pairs = [sorted(x for x in limits[i : i + 2]) if None not in limits[i : i + 2]
             else list(limits[i : i + 2]) for i in (0, 2, 4)]
    life = Lifetime(pairs[0][0], pairs[0][1], pairs[1][0], pairs[1][1], pairs[2][0], pairs[2][1])
    t = LifetimeTracker(life, created=0.0)
    seen: list[tuple[LifetimeKind, LifetimeLimit]] = []
    now = 0.0
    nbytes = npackets = 0
    for size, dt, is_packet in steps:
        now += dt
        if is_packet:
            nbytes += size
            npackets += 1
            events = t.account(size, now)
        else:
            events = t.poll(now)
        seen += kinds(events)
        # after every call, exactly the limits already reached have been reported
        current = {BYTES: nbytes, PACKETS: npackets, SECONDS: now}
        due = {(k, lim) for k in (SOFT, HARD) for lim in LifetimeLimit
               if getattr(life, f"{k.value}_{lim.value}") is not None
               and current[lim] >= getattr(life, f"{k.value}_{lim.value}")}
        assert set(seen) == due
        assert len(seen) == len(set(seen))
        assert t.expired == any(k is HARD for k, _ in due)
        deadline = t.next_deadline()
        pending = [getattr(life, f"{k.value}_seconds") for k in (SOFT, HARD)
                   if getattr(life, f"{k.value}_seconds") is not None and (k, SECONDS) not in due]
        assert deadline == (min(pending) if pending else None)
