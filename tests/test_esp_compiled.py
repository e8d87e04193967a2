"""ESP's compiled fast path (ipsec/_espfast.c via ipsec/fastpath.py): built, switchable, and
the same as the Python reference.

tests/test_esp_fastpath.py runs packets through the compiled, fused and general paths side
by side; here are the window in C against replay.ReplayWindow, the switch, and the Python
paths' own tests run once more with the compiled path off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.crypto.transforms import encryption
from ipseclab.ipsec import esp, fastpath, ip
from ipseclab.ipsec.replay import MAX_REPLAY_WINDOW, ReplayWindow
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.verdict import Status

ROOT = Path(__file__).resolve().parent.parent
PURE = os.environ.get("IPSECLAB_PURE_PYTHON", "") not in ("", "0")
needs_compiled = pytest.mark.skipif(not fastpath.available(), reason=fastpath.status())


def _sa(keyword: str = "aes128gcm16", **kw) -> SecurityAssociation:
    enc = encryption(keyword)
    kw = {"mode": "tunnel", **kw}
    return SecurityAssociation(spi=0x1000, src="192.0.2.1", dst="192.0.2.2", encryption=enc,
                               encryption_key=bytes(range(enc.keymat_size)), **kw)


@pytest.mark.skipif(PURE, reason="IPSECLAB_PURE_PYTHON is set")
def test_setup_builds_the_compiled_path() -> None:
    """scripts/setup.sh installs gcc and the headers, so the README's machine has it."""
    assert fastpath.available(), fastpath.status()
    sa = _sa()
    assert sa.compiled is not None and type(sa.replay).__module__ == "ipseclab.ipsec._espfast"


@needs_compiled
def test_which_sas_are_compiled() -> None:
    assert _sa("aes256gcm12").compiled is not None
    assert _sa("chacha20poly1305").compiled is not None
    assert _sa("aes128gcm16", esn=True).compiled is None  # ESN: Python
    assert isinstance(_sa("aes128gcm16", esn=True).replay, ReplayWindow)
    assert _sa("aes128gcm16", tfc_padding=200).compiled is None
    assert _sa("aes128ccm16").compiled is None
    assert _sa("aes128gmac").compiled is None
    with fastpath.pure_python():
        sa = _sa()
    assert sa.compiled is None and isinstance(sa.replay, ReplayWindow)
    assert _sa().compiled is not None  # the switch is back on after the block


def test_environment_switch_turns_the_compiled_path_off() -> None:
    code = ("from ipseclab.crypto.transforms import encryption\n"
            "from ipseclab.ipsec import fastpath\n"
            "from ipseclab.ipsec.sa import SecurityAssociation\n"
            "sa = SecurityAssociation(spi=256, src='192.0.2.1', dst='192.0.2.2',"
            " encryption=encryption('aes128gcm16'), encryption_key=bytes(20))\n"
            "print(fastpath.available(), sa.compiled, fastpath.status())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "IPSECLAB_PURE_PYTHON": "1"}, check=True).stdout
    assert out.startswith("False None pure Python")


# -- the window in C against replay.ReplayWindow --------------------------------------------

sizes = st.sampled_from([0, 1, 2, 31, 63, 64, 65, 128, 1000, MAX_REPLAY_WINDOW])
numbers = st.one_of(st.integers(0, 300), st.integers(2**32 - 300, 2**32 + 5),
                    st.integers(0, 2**32 - 1), st.integers(-3, 2**64 + 3))
operations = st.lists(st.tuples(st.sampled_from(["check", "update", "seen", "infer", "fill"]),
                                numbers, st.integers(0, 3)), max_size=60)


def _apply(window, op: str, seq: int):
    try:
        if op == "fill":  # a run of packets in order: sets bits in several blocks
            for n in range(max(seq, 1), max(seq, 1) + 150):
                window.update(n)
            return None
        if op == "check":
            return window.check(seq)
        if op == "update":
            return window.update(seq)
        if op == "seen":
            return window.seen(seq)
        return window.infer_seq64(seq)
    except ValueError as exc:
        return ("ValueError", str(exc))


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(sizes, operations)
def test_window_in_c_answers_as_the_python_window(size: int, ops) -> None:
    ours, reference = fastpath._espfast.ReplayWindow(size), ReplayWindow(size)
    for op, seq, step in ops:
        # Mostly numbers near the right edge, where the ring's blocks are cleared.
        seq = reference.highest + seq % 200 - 100 if step == 0 and op != "infer" else seq
        assert _apply(ours, op, seq) == _apply(reference, op, seq), (op, seq)
        assert ours.highest == reference.highest
    assert (ours.size, ours.esn, repr(ours)) == (reference.size, False, repr(reference))


@pytest.mark.parametrize("window_type", [ReplayWindow, fastpath._espfast.ReplayWindow]
                         if fastpath.available() else [ReplayWindow])
def test_a_long_jump_clears_every_block_of_the_ring(window_type) -> None:
    """RFC 6479 §2: moving the right edge by the whole ring or more clears all of it."""
    window = window_type(64)  # 64 numbers span two blocks; the ring has two
    for n in range(1, 128):
        window.update(n)
    window.update(5 * 64 + 1)  # block 5; block 4 shares its ring slot with block 0
    assert window.check(300).verdict.value == "ok"  # bit 44 of block 0 must be gone
    assert not window.seen(300)


@needs_compiled
def test_window_in_c_refuses_what_python_refuses() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        fastpath._espfast.ReplayWindow(-1)
    with pytest.raises(ValueError):
        fastpath._espfast.ReplayWindow(64, esn=True)
    with pytest.raises(TypeError):
        fastpath._espfast.ReplayWindow(64).check("1")


# -- the compiled calls at their edges ------------------------------------------------------

def _ipv4(payload: bytes = bytes(40)) -> bytes:
    from ipaddress import IPv4Address

    return ip.ipv4_header(IPv4Address("10.1.0.1"), IPv4Address("10.2.0.1"), 17,
                          len(payload)) + payload


def _ipv6(payload: bytes) -> bytes:
    from ipaddress import IPv6Address

    return ip.ipv6_header(IPv6Address("fd00::1"), IPv6Address("fd00::2"), 17,
                          len(payload)) + payload


@needs_compiled
def test_a_window_replaced_by_a_python_one_is_used() -> None:
    """sa.replay is the SA's window whatever its type; the C code checks which it got."""
    tx, rx = _sa(), _sa()
    wire = [esp.encapsulate(tx, _ipv4()) for _ in range(3)]
    rx.replay = ReplayWindow(32)
    assert [esp.decapsulate(rx, w).status for w in wire] == [Status.OK] * 3
    assert esp.decapsulate(rx, wire[1]).status is Status.REPLAY
    assert rx.replay.highest == 3 and rx.counters.packets == 3 and rx.counters.replay == 1


@needs_compiled
def test_other_buffers_give_the_same_results() -> None:
    tx, rx_bytes, rx_view = _sa(), _sa(), _sa()
    for _ in range(2):
        packet = esp.encapsulate(tx, bytearray(_ipv4()))
        a = esp.decapsulate(rx_bytes, packet)
        b = esp.decapsulate(rx_view, bytearray(packet))
        assert a.status is b.status is Status.OK and bytes(a.inner) == bytes(b.inner)
    assert esp.protect(_sa(), 17, memoryview(b"abc")) == esp.protect(_sa(), 17, b"abc")


@needs_compiled
def test_compiled_objects_refuse_bad_arguments() -> None:
    aead_type = fastpath._espfast.Aead
    with pytest.raises(ValueError, match="no compiled AEAD"):
        aead_type("aes-ccm", bytes(16), bytes(4), 16, 0x1000, None)
    with pytest.raises(ValueError, match="no compiled AEAD"):
        aead_type("aes-gcm", bytes(17), bytes(4), 16, 0x1000, None)
    sa = _sa()
    with pytest.raises(ValueError, match=r"outside 1\.\.2"):
        sa.compiled.protect(0, 4, b"")
    with pytest.raises(ValueError, match="IPv4 packet"):
        sa.compiled.encapsulate4(1, 1, b"\x60" + bytes(39))
    with pytest.raises(TypeError):
        sa.compiled.decapsulate(sa)


@needs_compiled
def test_outer_checksum_zero_is_written_as_python_writes_it() -> None:
    """-sum mod 0xFFFF gives 0, never 0xFFFF, when the sum is a multiple of 0xFFFF."""
    compiled, fused = _sa(), None
    with fastpath.pure_python():
        fused = _sa()
    inner = _ipv4()
    base, _, _ = compiled.fast_outer4
    total = 38 + len(inner) + (2 - len(inner)) % 4 + 16
    ident = -(base + inner[1] + total) % 0xFFFF or 0xFFFF  # the sum becomes 0 mod 0xFFFF
    compiled.ident = fused.ident = ident - 1
    out = esp.encapsulate(compiled, inner)
    assert out[10:12] == b"\0\0" and out == esp.encapsulate(fused, inner)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["aes128gcm16", "aes256gcm8", "chacha20poly1305"]),
       st.sampled_from([4, 41, 59, 6, 0]), st.integers(0, 255), st.binary(max_size=60),
       st.integers(-3, 3), st.sampled_from(["tunnel", "transport"]), st.booleans())
def test_authentic_packets_with_any_trailer_get_the_same_verdict(
        keyword, next_header, pad, filler, skew, mode, other_version) -> None:
    """Sealed with the right key but framed oddly: padding not 1, 2, 3, ..., pad lengths past
    the start, inner lengths that do not fill the payload (TFC), dummy packets, next headers
    that do not fit tunnel mode or the inner packet's version. Whatever the C code takes, it
    must decide as Python does."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    enc = encryption(keyword)
    keymat = bytes(range(enc.keymat_size))
    key, salt = keymat[: enc.key_size], keymat[enc.key_size :]
    body = filler
    if next_header in (4, 41):
        # An inner packet whose header gives its length off by skew.
        at, length = (2, len(filler) + 20) if next_header == 4 else (4, len(filler))
        body = _ipv4(filler) if next_header == 4 else _ipv6(filler)
        body = body[:at] + max(length + skew, 0).to_bytes(2, "big") + body[at + 2 :]
        if other_version:  # the next header says one IP version, the packet the other
            body = bytes([body[0] ^ 0x20]) + body[1:]
    padding = bytes(range(1, pad + 1)) if skew >= 0 else bytes(pad)
    plaintext = body + padding[: len(body) + 40] + bytes((pad, next_header))
    header = (0x1000).to_bytes(4, "big") + (7).to_bytes(4, "big")
    iv = (7).to_bytes(8, "big")
    aead = AESGCM(key) if keyword.startswith("aes") else ChaCha20Poly1305(key)
    sealed = aead.encrypt(salt + iv, plaintext, header)
    if enc.icv_size < 16:
        # RFC 4106 §6: a short ICV is the leading part of GCM's tag.
        sealed = sealed[: len(plaintext) + enc.icv_size]
    datagram = header + iv + sealed
    packet = ip.OuterHeader(ip.as_address("192.0.2.1"), ip.as_address("192.0.2.2"),
                            ip.PROTO_ESP).build(len(datagram)) + datagram
    results = []
    for pure in (False, True):
        if pure:
            with fastpath.pure_python():
                rx, rx_datagram = _sa(keyword, mode=mode), _sa(keyword, mode=mode)
        else:
            rx, rx_datagram = _sa(keyword, mode=mode), _sa(keyword, mode=mode)
        r1, r2 = esp.decapsulate(rx, packet), esp.unprotect(rx_datagram, datagram)
        results.append([(r.status, r.spi, r.seq, r.next_header, r.payload, r.inner, r.detail)
                        for r in (r1, r2)] + [rx.counters, rx_datagram.counters])
    assert results[0] == results[1]


@needs_compiled
def test_authentication_failure_leaves_the_window_alone() -> None:
    tx, rx = _sa(), _sa()
    packet = esp.encapsulate(tx, _ipv4())
    forged = packet[:-1] + bytes([packet[-1] ^ 1])
    result = esp.decapsulate(rx, forged)
    assert (result.status, result.spi, result.seq, result.detail) == \
        (Status.AUTH_FAILED, 0x1000, 1, "ICV mismatch")
    assert rx.replay.highest == 0 and rx.counters.auth_failed == 1
    assert esp.decapsulate(rx, packet).status is Status.OK


# -- the Python paths' own tests, with the compiled path off --------------------------------

PYTHON_PATH_TESTS = ["tests/test_esp.py", "tests/test_esp_fastpath.py", "tests/test_replay.py",
                     "tests/test_encap_decode.py", "tests/test_engine.py",
                     "tests/test_review_fuzz.py"]


@pytest.mark.skipif(PURE, reason="this run is the pure-Python one already")
def test_python_paths_pass_their_tests_without_the_compiled_path() -> None:
    """Where the module is not built, ipseclab is the pure-Python stack: it must stay right."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
         "not root and not slow and not interop", *PYTHON_PATH_TESTS],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "IPSECLAB_PURE_PYTHON": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(-8, 8), st.integers(0, 70))
def test_random_esp_in_a_plausible_ipv4_header_gets_the_python_verdict(
        body: bytes, skew: int, seq: int) -> None:
    """Outer headers the C code takes (IPv4 without options, protocol 50), any total length
    near the real one, any ESP bytes after them: never an exception, never another verdict."""
    esp_bytes = (0x1000).to_bytes(4, "big") + seq.to_bytes(4, "big") + body
    header = ip.OuterHeader(ip.as_address("192.0.2.1"), ip.as_address("192.0.2.2"),
                            ip.PROTO_ESP).build(max(len(esp_bytes) + skew, 0))
    packet = header + esp_bytes
    with fastpath.pure_python():
        reference = _sa()
    ours = _sa()
    for _ in range(2):  # the second time, a replay if the first was accepted
        a, b = esp.decapsulate(ours, packet), esp.decapsulate(reference, packet)
        assert (a.status, a.spi, a.seq, a.detail) == (b.status, b.spi, b.seq, b.detail)
    assert ours.counters == reference.counters
