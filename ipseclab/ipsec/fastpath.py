"""ESP's compiled fast path: which SAs may use it, and the switch that turns it off.

Why: in CPython the bookkeeping around one AEAD call (headers, replay window, trailer,
slices, counters) costs about as much as decrypting a 1400-octet packet, so pure Python
decapsulates at about a third of the rate of bare AESGCM calls. ``_espfast.c`` does the
common case of esp.py and replay.py in C on OpenSSL's EVP interface, and reaches well over
half (``benchmarks/esp_bench.py`` prints both paths side by side).

What it covers: ESP SAs with AES-GCM (RFC 4106, ICV 8, 12 or 16 octets) or
ChaCha20-Poly1305 (RFC 7634), without ESN and without TFC padding. For those, a whole
tunnel-mode packet in an IPv4 header without options, or any ESP datagram, is checked
against the replay window, decrypted, and its trailer checked in one call; an IPv4 packet
is encapsulated in one call. Everything else (replays, odd padding, dummy packets, IPv6
outside, ESN, other algorithms, AH) is decided by the Python code, which stays the
reference: tests/test_esp_compiled.py checks that both give the same bytes and verdicts.

The switch: ``IPSECLAB_PURE_PYTHON=1`` in the environment, or :func:`pure_python` around the
code that builds SAs (SAs decide when they are built). Without a C compiler at install time
the module is simply absent and ipseclab runs in pure Python.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ipseclab.ipsec.replay import MAX_REPLAY_WINDOW, ReplayCheck, ReplayVerdict, ReplayWindow
from ipseclab.ipsec.verdict import Status, Unprotected

if TYPE_CHECKING:
    from ipseclab.ipsec.sa import SecurityAssociation

try:
    from ipseclab.ipsec import _espfast
except ImportError as exc:  # not built: no compiler or headers at install time
    _espfast = None
    _WHY_NOT = f"not built ({exc})"
else:
    _espfast.setup(ReplayCheck, ReplayVerdict, Unprotected, Status)
    _WHY_NOT = ""

_enabled = _espfast is not None and os.environ.get("IPSECLAB_PURE_PYTHON", "") in ("", "0")
if _espfast is not None and not _enabled:
    _WHY_NOT = "switched off by IPSECLAB_PURE_PYTHON"

# The AEADs the C code knows, by the cipher family of their strongSwan keyword.
_CIPHERS = {f"aes{bits}gcm{icv}": "aes-gcm" for bits in (128, 192, 256) for icv in (8, 12, 16)}
_CIPHERS["chacha20poly1305"] = "chacha20-poly1305"


def built() -> bool:
    """True if the C module was built at install time (whether switched on or not)."""
    return _espfast is not None


def available() -> bool:
    """True if SAs built now take the compiled path where they can."""
    return _enabled


def status() -> str:
    """One line for people: which path ESP takes, and why."""
    return "compiled (ipseclab/ipsec/_espfast.c)" if _enabled else f"pure Python: {_WHY_NOT}"


@contextmanager
def pure_python() -> Iterator[None]:
    """SAs built inside this block take only the Python paths (tests compare the two)."""
    global _enabled
    before = _enabled
    _enabled = False
    try:
        yield
    finally:
        _enabled = before


def compile_sa(sa: SecurityAssociation) -> object | None:
    """The C object for an SA the compiled path covers, else None."""
    enc = sa.encryption
    cipher = _CIPHERS.get(enc.keyword) if enc is not None else None
    if (not _enabled or cipher is None or sa.protocol != "esp" or sa.esn or sa.tfc_padding
            or not 0 <= sa.replay_window <= MAX_REPLAY_WINDOW):
        return None
    keymat = sa.encryption_key
    return _espfast.Aead(cipher, keymat[: enc.key_size], keymat[enc.key_size :],
                         enc.icv_size, sa.spi, sa.fast_outer4)


def replay_window(sa: SecurityAssociation, compiled: object | None) -> object:
    """The SA's anti-replay window: in C for compiled SAs (the same RFC 6479 ring)."""
    if compiled is not None:
        return _espfast.ReplayWindow(sa.replay_window)
    return ReplayWindow(sa.replay_window, esn=sa.esn)
