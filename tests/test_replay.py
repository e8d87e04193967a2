"""Anti-replay window: RFC 4303 §3.4.3 and Appendix A, RFC 6479 bitmap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.ipsec.replay import ReplayVerdict, ReplayWindow

OK, REPLAY, TOO_OLD = ReplayVerdict.OK, ReplayVerdict.REPLAY, ReplayVerdict.TOO_OLD
LOW32 = 1 << 32


def receive(w: ReplayWindow, seq: int) -> ReplayVerdict:
    """What a receiver does: check, (ICV verifies), update."""
    result = w.check(seq & 0xFFFFFFFF)
    if result.verdict is OK:
        w.update(result.seq64)
    return result.verdict


def test_in_order() -> None:
    w = ReplayWindow(32)
    for seq in range(1, 200):
        assert receive(w, seq) is OK
    assert w.highest == 199
    assert w.check(199).verdict is REPLAY
    assert w.check(200) == (OK, 200)


def test_zero_is_never_valid() -> None:
    w = ReplayWindow(32)
    assert w.check(0).verdict is REPLAY
    assert ReplayWindow(0).check(0).verdict is REPLAY
    with pytest.raises(ValueError):
        w.update(0)


def test_out_of_order_within_window_and_duplicates() -> None:
    w = ReplayWindow(64)
    for seq in (10, 5, 7, 64, 3, 6):
        assert receive(w, seq) is OK
    for seq in (10, 5, 7, 64, 3, 6):
        assert w.check(seq).verdict is REPLAY
        assert w.seen(seq)
    assert not w.seen(4)
    assert receive(w, 4) is OK


def test_too_old_boundary() -> None:
    w = ReplayWindow(32)
    receive(w, 100)
    # the window holds 69..100 (32 numbers)
    assert w.check(69).verdict is OK
    assert w.check(68).verdict is TOO_OLD
    assert w.check(1).verdict is TOO_OLD
    assert not w.seen(68)


def test_check_does_not_change_window() -> None:
    w = ReplayWindow(32)
    assert w.check(5).verdict is OK
    assert w.check(5).verdict is OK  # no update yet (ICV not verified)
    assert w.highest == 0
    w.update(5)
    assert w.check(5).verdict is REPLAY


@pytest.mark.parametrize("size", [1, 32, 63, 64, 65, 128, 1000, 8192])
def test_big_jump_clears_stale_bits(size: int) -> None:
    w = ReplayWindow(size)
    for seq in range(1, 200):
        receive(w, seq)
    # Jump by a multiple of the ring length: every block index is reused.
    jump = 199 + 64 * 1024
    assert receive(w, jump) is OK
    lowest = jump - size + 1
    for seq in range(max(lowest, jump - 300), jump):
        assert w.check(seq).verdict is OK, seq
    assert w.check(lowest - 1).verdict is TOO_OLD
    assert w.check(jump).verdict is REPLAY


def test_jump_just_over_size() -> None:
    w = ReplayWindow(32)
    for seq in range(1, 33):
        receive(w, seq)
    receive(w, 33 + 32)
    assert w.check(33).verdict is TOO_OLD
    assert w.check(34).verdict is OK
    assert w.check(64).verdict is OK


def test_updating_an_old_number_is_ignored() -> None:
    w = ReplayWindow(32)
    receive(w, 1000)
    w.update(10)  # fell out of the window between check and update
    assert w.highest == 1000
    assert w.check(10).verdict is TOO_OLD


def test_disabled_window() -> None:
    w = ReplayWindow(0)
    for seq in (5, 5, 1, 1000, 1):
        assert receive(w, seq) is OK
    assert w.highest == 1000
    assert not w.seen(5)
    assert w.size == 0


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(-1)


def test_seq_out_of_32_bits_rejected() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(32).check(LOW32)


def test_repr_is_short() -> None:
    w = ReplayWindow(64, esn=True)
    receive(w, 7)
    assert repr(w) == "ReplayWindow(size=64, esn, highest=7)"


# -- ESN (RFC 4303 Appendix A2.2) --------------------------------------------------------------


def test_esn_without_esn_seq64_is_seq() -> None:
    w = ReplayWindow(32)
    assert w.check(0xFFFFFFFF).seq64 == 0xFFFFFFFF


def test_esn_wrap_forward_and_back() -> None:
    w = ReplayWindow(32, esn=True)
    w.update(LOW32 - 5)
    # Case A: a small number has wrapped into the next subspace.
    assert w.check(3) == (OK, LOW32 + 3)
    assert w.check(0) == (OK, LOW32)  # low bits 0 are fine with ESN
    receive(w, 3)
    assert w.highest == LOW32 + 3
    # Case B: the window spans two subspaces; large numbers belong to the previous one.
    assert w.check(0xFFFFFFFE) == (OK, LOW32 - 2)
    assert w.check(LOW32 - 5).verdict is REPLAY
    assert w.check(LOW32 - 5).seq64 == LOW32 - 5
    receive(w, 0xFFFFFFFE)
    assert w.check(0xFFFFFFFE).verdict is REPLAY
    # just below the window bottom (highest - 31): too old, not a wrap forward
    bottom = (LOW32 + 3) - 31
    assert w.check(bottom & 0xFFFFFFFF) == (OK, bottom)
    assert w.check((bottom - 1) & 0xFFFFFFFF).seq64 == bottom - 1 + LOW32


def test_esn_case_a_below_window_means_next_subspace() -> None:
    w = ReplayWindow(32, esn=True)
    w.update(1000)
    # 900 is below the window 969..1000: with ESN it is read as 2**32 + 900 (ahead)
    assert w.check(900) == (OK, LOW32 + 900)
    assert w.check(980) == (OK, 980)


def test_esn_before_start_of_sa_is_too_old() -> None:
    w = ReplayWindow(32, esn=True)
    w.update(5)
    result = w.check(0xFFFFFFF0)
    assert result.verdict is TOO_OLD
    assert result.seq64 < 0


def test_esn_jump_more_than_2_32() -> None:
    w = ReplayWindow(32, esn=True)
    receive(w, 10)
    big = 3 * LOW32 + 7
    w.update(big)
    assert w.highest == big
    assert w.check(7) == (REPLAY, big)
    assert w.check(8) == (OK, big + 1)
    # window 3*2**32-24 .. 3*2**32+7 spans the boundary (case B)
    assert w.check(0xFFFFFFF0) == (OK, 3 * LOW32 - 16)
    assert w.check(10).seq64 == big + 3
    assert not w.seen(10)


def test_esn_disabled_window_infers_nearest() -> None:
    w = ReplayWindow(0, esn=True)
    w.update(LOW32 + 10)
    assert w.check(0xFFFFFFF0) == (OK, LOW32 - 16)
    assert w.check(20) == (OK, LOW32 + 20)


# -- property test against a reference model -----------------------------------------------------


class Model:
    """The obvious, slow definition: a set of received numbers and the highest one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.received: set[int] = set()
        self.highest = 0

    def check(self, seq64: int) -> ReplayVerdict:
        if seq64 == 0:
            return REPLAY
        if self.size == 0 or seq64 > self.highest:
            return OK
        if seq64 <= self.highest - self.size:
            return TOO_OLD
        return REPLAY if seq64 in self.received else OK

    def update(self, seq64: int) -> None:
        self.received.add(seq64)
        self.highest = max(self.highest, seq64)


SIZES = st.sampled_from([0, 1, 2, 31, 32, 64, 65, 127, 128, 129, 1024, 8192])


@settings(max_examples=150, deadline=None)
@given(
    size=SIZES,
    deltas=st.lists(
        st.one_of(
            st.integers(-200, 200),
            st.integers(-9000, 9000),
            st.integers(-(2**31), 2**31),
        ),
        max_size=200,
    ),
    esn=st.booleans(),
    verify=st.lists(st.booleans(), min_size=200, max_size=200),
)
def test_matches_reference_model(
    size: int, deltas: list[int], esn: bool, verify: list[bool]
) -> None:
    w = ReplayWindow(size, esn=esn)
    model = Model(size)
    infer_w = size if size else 2**31
    for delta, icv_ok in zip(deltas, verify, strict=False):
        true = model.highest + delta
        limit = 2**64 if esn else LOW32
        if not 0 <= true < limit:
            continue
        # With ESN the high bits are recoverable only for numbers in
        # [highest - W + 1, highest - W + 2**32] (RFC 4303 A2.2).
        if esn and not model.highest - infer_w + 1 <= true <= model.highest - infer_w + LOW32:
            continue
        result = w.check(true & 0xFFFFFFFF)
        assert result.seq64 == true
        assert result.verdict is model.check(true), (true, model.highest)
        if result.verdict is OK and icv_ok:
            w.update(true)
            model.update(true)
        assert w.highest == model.highest
    # every number in the window agrees with the model
    if size:
        for seq64 in range(max(1, model.highest - min(size, 300) + 1), model.highest + 1):
            assert w.seen(seq64) == (seq64 in model.received)
