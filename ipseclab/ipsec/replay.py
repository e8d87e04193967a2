"""Anti-replay window for ESP and AH receivers (RFC 4303 §3.4.3 and Appendix A, RFC 6479).

Why a window: an attacker can record ESP packets and send them again. The receiver remembers
which sequence numbers it has accepted within the last ``size`` numbers below the highest one
seen, and drops duplicates and numbers older than that.

The two steps are separate on purpose (RFC 4303 §3.4.3): ``check()`` runs *before* the ICV is
verified, so a forged packet is dropped cheaply, and ``update()`` runs only *after* the ICV
verified, so a forged packet can never move the window.

With Extended Sequence Numbers (ESN, RFC 4303 §2.2.1) only the low 32 bits travel in the
packet. ``check()`` infers the high 32 bits from the window position as in RFC 4303
Appendix A2.2 and returns the full 64-bit number, which the caller feeds into the ICV.

The bitmap is the one of RFC 6479: ``n`` blocks of 64 bits used as a ring, with one block more
than the window needs. Moving the window forward clears whole blocks instead of shifting every
bit, so the cost per packet does not grow with the window size.

SAs on ESP's compiled fast path (ipseclab/ipsec/fastpath.py) keep their window in C: the same
ring and the same API, without ESN; tests/test_esp_compiled.py holds the two against each other.

Sequence number 0 is never sent (RFC 4303 §2.2: the first packet carries 1), so ``check()``
always answers REPLAY for it, as if number 0 had been received when the SA was created.
A window of size 0 disables the check: every other number is OK (RFC 4303 §2.2.1 lets a
receiver do that, though it then SHOULD NOT negotiate ESN).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["MAX_REPLAY_WINDOW", "ReplayCheck", "ReplayVerdict", "ReplayWindow"]

# The largest window Linux takes (a bitmap of XFRMA_REPLAY_ESN_MAX = 4096 bits); the
# configuration readers refuse more, as the kernel would, instead of allocating it.
MAX_REPLAY_WINDOW = 4096

_BLOCK_BITS = 64
_BLOCK_SHIFT = 6
_BIT_MASK = _BLOCK_BITS - 1
_LOW32 = 1 << 32
_SEQ64_LIMIT = 1 << 64
# Without a window there is nothing to infer the high bits from but ``highest``: take the
# high half that puts the number nearest to it (half the 32-bit space either way).
_HALF_SPACE = 1 << 31


class ReplayVerdict(enum.Enum):
    """What the window says about a received sequence number."""

    OK = "ok"  #: new: process the packet (verify the ICV, then call update()).
    REPLAY = "replay"  #: already received (or 0): drop.
    TOO_OLD = "too old"  #: left of the window; the receiver cannot tell: drop.


class ReplayCheck(NamedTuple):
    """Result of :meth:`ReplayWindow.check`.

    ``seq64`` is the full sequence number (ESN: high bits inferred; otherwise the 32-bit value).
    It can be negative only with ESN, for a number that would lie before the start of the SA;
    the verdict is then TOO_OLD.
    """

    verdict: ReplayVerdict
    seq64: int

    @property
    def ok(self) -> bool:
        return self.verdict is ReplayVerdict.OK


class ReplayWindow:
    """Receiver-side sliding window of ``size`` sequence numbers (0 disables it)."""

    __slots__ = ("_blocks", "_esn", "_highest", "_index_mask", "_infer_w", "_size")

    def __init__(self, size: int = 32, esn: bool = False) -> None:
        if size < 0:
            raise ValueError(f"replay window size must be >= 0, not {size}")
        self._size = size
        self._esn = esn
        self._highest = 0
        # One block more than the window spans, rounded up to a power of two so that the
        # ring index is a mask (RFC 6479 §2).
        nblocks = 1
        while nblocks < (size + _BLOCK_BITS - 1) // _BLOCK_BITS + 1:
            nblocks <<= 1
        self._index_mask = nblocks - 1
        self._blocks = [0] * nblocks
        self._infer_w = size if size else _HALF_SPACE

    # -- teaching properties ------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def esn(self) -> bool:
        return self._esn

    @property
    def highest(self) -> int:
        """Highest sequence number accepted so far (the right edge of the window), 0 at start."""
        return self._highest

    def seen(self, seq64: int) -> bool:
        """True if ``seq64`` lies in the window and its bit is set.

        Numbers left of the window are forgotten and answer False, as does 0.
        """
        if self._size == 0 or seq64 <= 0 or seq64 > self._highest:
            return False
        if seq64 + self._size <= self._highest:
            return False
        block = self._blocks[(seq64 >> _BLOCK_SHIFT) & self._index_mask]
        return bool(block >> (seq64 & _BIT_MASK) & 1)

    def __repr__(self) -> str:
        esn = ", esn" if self._esn else ""
        return f"ReplayWindow(size={self._size}{esn}, highest={self._highest})"

    # -- receive path -------------------------------------------------------------------------

    def infer_seq64(self, seq: int) -> int:
        """The full 64-bit number for the 32-bit ``seq`` (RFC 4303 Appendix A2.2).

        Without ESN this is ``seq`` itself. With ESN, let ``Th``/``Tl`` be the high/low halves of
        ``highest`` and ``W`` the window size:

        * Case A, window within one 2**32 subspace (``Tl >= W - 1``): a ``seq`` at or above the
          window bottom ``Tl - W + 1`` is in subspace ``Th``, a smaller one has wrapped: ``Th + 1``.
        * Case B, window spans two subspaces (``Tl < W - 1``): a ``seq`` at or above the bottom
          (taken mod 2**32) lies in the previous subspace ``Th - 1``, otherwise in ``Th``.
        """
        if not 0 <= seq < _LOW32:
            raise ValueError(f"sequence number {seq} does not fit in 32 bits")
        if not self._esn:
            return seq
        w = self._infer_w
        th, tl = divmod(self._highest, _LOW32)
        if tl >= w - 1:
            seqh = th if seq >= tl - w + 1 else th + 1
        else:
            seqh = th - 1 if seq >= (tl - w + 1) % _LOW32 else th
        return seqh * _LOW32 + seq

    def check(self, seq: int) -> ReplayCheck:
        """Classify the 32-bit ``seq`` from a packet, before its ICV is verified.

        Does not change the window: call :meth:`update` once the ICV verified.
        """
        if not self._esn and self._highest < seq < _LOW32:
            return ReplayCheck(ReplayVerdict.OK, seq)  # the usual case: the next packet
        seq64 = self.infer_seq64(seq)
        if seq64 <= 0:
            verdict = ReplayVerdict.REPLAY if seq64 == 0 else ReplayVerdict.TOO_OLD
            return ReplayCheck(verdict, seq64)
        if seq64 >= _SEQ64_LIMIT:
            # Beyond 2**64 - 1 the sender had to rekey (RFC 4303 §3.3.3): never valid.
            return ReplayCheck(ReplayVerdict.TOO_OLD, seq64)
        size = self._size
        if size == 0 or seq64 > self._highest:
            return ReplayCheck(ReplayVerdict.OK, seq64)
        if seq64 + size <= self._highest:
            return ReplayCheck(ReplayVerdict.TOO_OLD, seq64)
        block = self._blocks[(seq64 >> _BLOCK_SHIFT) & self._index_mask]
        if block >> (seq64 & _BIT_MASK) & 1:
            return ReplayCheck(ReplayVerdict.REPLAY, seq64)
        return ReplayCheck(ReplayVerdict.OK, seq64)

    def update(self, seq64: int) -> None:
        """Record ``seq64`` as received; call only after the ICV verified (RFC 4303 §3.4.3).

        Safe to call for a number that meanwhile fell out of the window (it is ignored) or was
        already recorded (nothing changes).
        """
        highest = self._highest
        if seq64 == highest + 1 and seq64 & _BIT_MASK:
            # The next packet, in the block of the previous one: nothing to clear. (Without
            # a window the single block is never read.)
            self._highest = seq64
            self._blocks[(seq64 >> _BLOCK_SHIFT) & self._index_mask] |= 1 << (seq64 & _BIT_MASK)
            return
        if not 0 < seq64 < _SEQ64_LIMIT:
            raise ValueError(f"sequence number {seq64} is outside 1..2**64-1")
        if self._size == 0:
            if seq64 > highest:
                self._highest = seq64
            return
        blocks = self._blocks
        mask = self._index_mask
        if seq64 > highest:
            # Clear the blocks the right edge moves into: at most all of them (RFC 6479 §2).
            top = highest >> _BLOCK_SHIFT
            new_top = seq64 >> _BLOCK_SHIFT
            steps = min(new_top - top, mask + 1)
            for i in range(new_top - steps + 1, new_top + 1):
                blocks[i & mask] = 0
            self._highest = seq64
        elif seq64 + self._size <= highest:
            return
        i = (seq64 >> _BLOCK_SHIFT) & mask
        blocks[i] |= 1 << (seq64 & _BIT_MASK)
