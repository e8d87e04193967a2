"""Review of ESP's compiled fast path (ipsec/_espfast.c): misuse of the C objects must raise,
never crash the interpreter, a failed setup() must leave the working module alone, and
verdicts must be those of esp.py's general path; a packet too long once protected is a
ProtectError on every path.

The misuse checks run in a child interpreter: on a faulty build it dies of SIGSEGV, which
must fail the test and not take pytest down with it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ipseclab.crypto.transforms import encryption
from ipseclab.ipsec import esp, fastpath
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.verdict import Status

ROOT = Path(__file__).resolve().parent.parent
needs_compiled = pytest.mark.skipif(not fastpath.available(), reason=fastpath.status())

_PRELUDE = """
from ipaddress import IPv4Address
from ipseclab.crypto.transforms import encryption
from ipseclab.ipsec import esp, fastpath, ip
from ipseclab.ipsec.sa import SecurityAssociation
E = fastpath._espfast
enc = encryption("aes128gcm16")

def sa():
    return SecurityAssociation(spi=0x1000, src="192.0.2.1", dst="192.0.2.2", mode="tunnel",
                               encryption=enc, encryption_key=bytes(range(20)))

inner = ip.ipv4_header(IPv4Address("10.1.0.1"), IPv4Address("10.2.0.1"), 17, 8) + bytes(8)
"""


def _run(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", _PRELUDE + code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    return run.stdout


@needs_compiled
def test_an_aead_without_init_raises_instead_of_crashing() -> None:
    """Aead.__new__ alone has no EVP contexts; OpenSSL would dereference NULL."""
    out = _run("""
a = E.Aead.__new__(E.Aead)
rx = sa()
datagram = (0x1000).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(60)
calls = [lambda: a.protect(1, 4, b"abc"), lambda: a.unprotect(rx, datagram),
         lambda: a.decapsulate(rx, esp.encapsulate(sa(), inner)),
         lambda: a.encapsulate4(1, 1, inner)]
for call in calls:
    try:
        call()
    except RuntimeError as exc:
        print(type(exc).__name__)
""")
    assert out.split() == ["RuntimeError"] * 4


@needs_compiled
def test_a_failed_init_leaves_no_usable_key() -> None:
    """Re-initialising with sizes the C code refuses must not keep encrypting with the old key."""
    out = _run("""
tx = sa()
try:
    tx.compiled.__init__("aes-gcm", bytes(17), bytes(4), 16, 0x1000, None)
except ValueError:
    pass
try:
    tx.compiled.protect(1, 4, b"abc")
except RuntimeError as exc:
    print("refused", exc)
""")
    assert out.startswith("refused")


@needs_compiled
def test_a_failed_setup_keeps_the_types_it_had() -> None:
    """setup() with a Status lacking a member raised but left NULLs that a later packet
    passed to Unprotected (a NULL argument: SIGSEGV)."""
    out = _run("""
from ipseclab.ipsec.replay import ReplayCheck, ReplayVerdict
from ipseclab.ipsec.verdict import Status, Unprotected
tx, rx = sa(), sa()
wire = [esp.encapsulate(tx, inner) for _ in range(2)]
for bad in [(ReplayCheck, ReplayVerdict, Unprotected, object()),
            (ReplayCheck, object(), Unprotected, Status)]:
    try:
        E.setup(*bad)
    except AttributeError:
        print("raised")
forged = wire[1][:-1] + bytes([wire[1][-1] ^ 1])
print(esp.decapsulate(rx, wire[0]).status, esp.decapsulate(rx, forged).status,
      rx.replay.check(1).verdict.name)
""")
    assert out.split() == ["raised", "raised", "ok", "auth_failed", "REPLAY"]


def _sa(keyword: str, spi: int) -> SecurityAssociation:
    enc = encryption(keyword)
    return SecurityAssociation(spi=spi, src="192.0.2.1", dst="192.0.2.2", encryption=enc,
                               encryption_key=bytes(range(enc.keymat_size)))


@pytest.mark.parametrize("keyword", ["aes128gcm8", "aes192gcm12", "aes128gcm16",
                                     "chacha20poly1305"])
@pytest.mark.parametrize("length", [3, 40])
def test_unprotect_reports_the_spi_of_the_packet(keyword: str, length: int) -> None:
    """Two SAs with one key (manual keys in a lab): a datagram sent on SPI 0x2000 and read
    with the SA of SPI 0x1000 verifies, and esp.unprotect's general path, the reference,
    reports the SPI the packet carries. The compiled path and the fused Python path (gcm16,
    chacha20poly1305) reported the SA's."""
    datagram = esp.protect(_sa(keyword, 0x2000), 17, bytes(length))
    ours = _sa(keyword, 0x1000)
    with fastpath.pure_python():
        fused, reference = _sa(keyword, 0x1000), _sa(keyword, 0x1000)
    reference.fast_aead = None  # the general path
    results = [esp.unprotect(sa, datagram) for sa in (ours, fused, reference)]
    for r in results:
        assert (r.status, r.spi, r.seq, r.payload) == (Status.OK, 0x2000, 1, bytes(length))


@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("path", ["compiled", "fused", "general"])
@pytest.mark.parametrize("udp", [False, True])
def test_a_packet_too_long_once_protected_is_a_protect_error(mode, path, udp) -> None:
    """65,500 octets fit in IP, not with ESP's overhead added: ProtectError (which the engine
    turns into an "error" verdict), not struct.error or ValueError."""
    from ipaddress import IPv4Address

    from ipseclab.ipsec import ip
    from ipseclab.ipsec.sa import UdpEncap
    from ipseclab.ipsec.verdict import ProtectError

    def build() -> SecurityAssociation:
        return SecurityAssociation(spi=0x1000, src="192.0.2.1", dst="192.0.2.2", mode=mode,
                                   encryption=encryption("aes128gcm16"),
                                   encryption_key=bytes(20), encap=UdpEncap() if udp else None)
    if path == "compiled":
        if not fastpath.available():
            pytest.skip(fastpath.status())
        sa = build()
    else:
        with fastpath.pure_python():
            sa = build()
        if path == "general":
            sa.fast_aead = sa.fast_outer4 = None
    src, dst = (IPv4Address("10.1.0.1"), IPv4Address("10.2.0.1")) if mode == "tunnel" \
        else (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
    big = ip.ipv4_header(src, dst, 17, 65500) + bytes(65500)
    with pytest.raises(ProtectError, match="65535"):
        esp.encapsulate(sa, big)
    fits = ip.ipv4_header(src, dst, 17, 65400) + bytes(65400)
    assert len(esp.encapsulate(sa, fits)) <= 0xFFFF
