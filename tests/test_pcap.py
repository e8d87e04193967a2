"""Capture reading and writing, checked against Scapy's and tshark's own files."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, rdpcap, wrpcap

from ipseclab.capture.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    CaptureError,
    Frame,
    PcapWriter,
    ip_offset,
    ip_payload,
    read_capture,
    write_pcap,
)
from ipseclab.errors import IpsecLabError

TSHARK = shutil.which("tshark")
T0 = 1_700_000_000.0


def ip4(n: int = 0, size: int = 20) -> IP:
    return (
        IP(src="10.0.0.1", dst="10.0.1.1", id=n)
        / UDP(sport=50000, dport=50000)
        / Raw(bytes([n % 256]) * size)
    )


def ip6(n: int = 0) -> IPv6:
    return (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / UDP(sport=50000, dport=50001)
        / Raw(b"v6" * (n + 1))
    )


def eth() -> Ether:
    # Explicit addresses: Scapy would otherwise try to resolve them.
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def ether_frames() -> list:
    frames = [
        eth() / ip4(1),
        eth() / ip6(2),
        eth() / Dot1Q(vlan=7) / ip4(3),
        eth() / Dot1AD(vlan=5) / Dot1Q(vlan=7) / ip6(4),
        eth() / ARP(psrc="10.0.0.1", pdst="10.0.0.2", hwdst="02:00:00:00:00:02"),
        # short frame: Ethernet padding after the IP packet
        Ether(bytes(eth() / ip4(6, size=0)) + bytes(18)),
    ]
    for i, f in enumerate(frames):
        f.time = T0 + i * 0.25 + 0.000123
    return frames


def inner_ip(pkt) -> bytes | None:
    """The IP packet in a Scapy frame, without link-layer padding."""
    pkt = pkt.__class__(bytes(pkt))  # dissected, so that length fields are filled in
    if IP in pkt:
        return bytes(pkt[IP])[: pkt[IP].len]
    if IPv6 in pkt:
        return bytes(pkt[IPv6])[: 40 + pkt[IPv6].plen]
    return None


def check_same(frames: list[Frame], pkts: list, linktype: int, resolution: float = 1e-6) -> None:
    assert [f.number for f in frames] == list(range(1, len(pkts) + 1))
    assert len(frames) == len(pkts)
    for fr, pkt in zip(frames, pkts, strict=True):
        raw = bytes(pkt)
        assert fr.linktype == linktype
        assert fr.data == raw
        assert fr.orig_len == len(raw)
        assert abs(fr.timestamp - float(pkt.time)) <= resolution
        assert ip_payload(fr.linktype, fr.data) == inner_ip(pkt)


# ---------------------------------------------------------------- files written by Scapy


def test_scapy_pcap_ethernet(tmp_path: Path) -> None:
    pkts = ether_frames()
    wrpcap(str(tmp_path / "e.pcap"), pkts)
    frames = list(read_capture(tmp_path / "e.pcap"))
    check_same(frames, pkts, LINKTYPE_ETHERNET)
    padded = frames[-1]
    assert len(padded.data) == 60 and ip_payload(padded.linktype, padded.data) == bytes(ip4(6, 0))
    assert ip_payload(frames[4].linktype, frames[4].data) is None  # ARP


def test_scapy_pcap_nanoseconds_and_big_endian(tmp_path: Path) -> None:
    pkts = ether_frames()
    pkts[0].time = T0 + 0.123456789
    for name, kw in (("ns.pcap", {"nano": True}), ("be.pcap", {"endianness": ">"})):
        wrpcap(str(tmp_path / name), pkts, **kw)
        frames = list(read_capture(tmp_path / name))
        check_same(frames, pkts, LINKTYPE_ETHERNET, 1e-6 if "nano" not in kw else 1e-7)
    ns = next(iter(read_capture(tmp_path / "ns.pcap")))
    assert ns.timestamp == pytest.approx(T0 + 0.123456789, abs=1e-7)


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (LINKTYPE_IPV4, lambda p: p),
        (LINKTYPE_LINUX_SLL, lambda p: CookedLinux(pkttype=0, lladdrtype=1, src=b"\x02" * 6) / p),
        (LINKTYPE_LINUX_SLL2, lambda p: CookedLinuxV2(ifindex=3) / p),
    ],
)
def test_scapy_pcap_other_link_types(tmp_path: Path, linktype: int, wrap) -> None:
    pkts = [wrap(ip4(1)), wrap(ip4(2, size=1000))]
    if linktype != LINKTYPE_IPV4:
        pkts.append(wrap(ip6(3)))
    for i, p in enumerate(pkts):
        p.time = T0 + i
    wrpcap(str(tmp_path / "x.pcap"), pkts)
    check_same(list(read_capture(tmp_path / "x.pcap")), pkts, linktype)


def test_scapy_pcap_raw_ip_101(tmp_path: Path) -> None:
    pkts = [ip4(1), ip6(2), ip4(3)]
    for p in pkts:
        p.time = T0
    wrpcap(str(tmp_path / "raw.pcap"), pkts, linktype=LINKTYPE_RAW)
    check_same(list(read_capture(tmp_path / "raw.pcap")), pkts, LINKTYPE_RAW)


def test_scapy_pcapng(tmp_path: Path) -> None:
    pkts = ether_frames()
    with PcapNgWriter(str(tmp_path / "e.pcapng")) as w:
        for p in pkts:
            w.write(p)
    check_same(list(read_capture(tmp_path / "e.pcapng")), pkts, LINKTYPE_ETHERNET)


# ---------------------------------------------------------------- our writer, others' readers


def test_writer_read_by_scapy_and_by_us(tmp_path: Path) -> None:
    pkts = [bytes(ip4(i)) for i in range(5)] + [bytes(ip6(1))]
    path = tmp_path / "ours.pcap"
    with PcapWriter(path) as w:
        for i, p in enumerate(pkts):
            w.write(p, T0 + i + 0.5)
    back = rdpcap(str(path))
    assert [bytes(p) for p in back] == pkts
    assert [float(p.time) for p in back] == [T0 + i + 0.5 for i in range(6)]
    frames = list(read_capture(path))
    assert [f.data for f in frames] == pkts
    assert {f.linktype for f in frames} == {LINKTYPE_RAW}


def test_write_pcap_items_and_timestamp_precision(tmp_path: Path) -> None:
    path = tmp_path / "w.pcap"
    n = write_pcap(path, [b"\x45" + bytes(19), (bytes(ip4()), T0 + 0.999_999_6)], LINKTYPE_RAW)
    assert n == 2
    frames = list(read_capture(path))
    assert frames[0].timestamp == 0.0
    # 0.9999996 rounds up to the next second, never to a fraction of 1_000_000.
    assert frames[1].timestamp == T0 + 1.0
    # Frames copy across files (e.g. filtering a capture).
    write_pcap(tmp_path / "copy.pcap", frames, LINKTYPE_RAW)
    assert [f.data for f in read_capture(tmp_path / "copy.pcap")] == [f.data for f in frames]
    with pytest.raises(CaptureError, match="link type"):
        write_pcap(tmp_path / "bad.pcap", frames, LINKTYPE_ETHERNET)
    with pytest.raises(CaptureError, match="timestamp"), PcapWriter(tmp_path / "t.pcap") as w:
        w.write(b"\x45", -1.0)


def test_writer_nanosecond(tmp_path: Path) -> None:
    path = tmp_path / "ns.pcap"
    with PcapWriter(path, nanosecond=True) as w:
        w.write(bytes(ip4()), T0 + 0.000000123)
    assert path.read_bytes()[:4] == struct.pack("<I", 0xA1B23C4D)
    (frame,) = read_capture(path)
    assert frame.timestamp == pytest.approx(T0 + 123e-9, abs=1e-7)
    assert float(rdpcap(str(path))[0].time) == pytest.approx(T0 + 123e-9, abs=1e-7)


@pytest.mark.interop
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap", "pcap"])
def test_tshark_converted_files(tmp_path: Path, fmt: str) -> None:
    pkts = ether_frames()
    src = tmp_path / "src.pcap"
    wrpcap(str(src), pkts)
    out = tmp_path / f"out.{fmt}"
    subprocess.run(
        [TSHARK, "-r", str(src), "-F", fmt, "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    check_same(list(read_capture(out)), pkts, LINKTYPE_ETHERNET)


@pytest.mark.interop
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_tshark_reads_our_writer(tmp_path: Path) -> None:
    path = tmp_path / "ours.pcap"
    write_pcap(path, [(bytes(ip4(i)), T0 + i) for i in range(3)])
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "ip.id"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert out == ["1", "0x0000", "2", "0x0001", "3", "0x0002"]


# ---------------------------------------------------------------- hand-built pcapng


def block(order: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, tsresol: int | None = None, tsoffset: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += struct.pack(order + "HHB3x", 9, 1, tsresol)
    if tsoffset:
        opts += struct.pack(order + "HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, 0) + opts)


def epb(order: str, iface: int, ticks: int, data: bytes, orig: int | None = None) -> bytes:
    head = struct.pack(
        order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig or len(data)
    )
    return block(order, 6, head + data)


def test_pcapng_sections_resolutions_and_old_blocks(tmp_path: Path) -> None:
    a, b, c = bytes(ip4(1)), bytes(ip6(2)), bytes(ip4(3, size=3))
    ether = bytes(eth() / ip4(4))
    data = (
        shb("<")
        + idb("<", LINKTYPE_RAW, tsresol=9)  # nanoseconds
        + idb("<", LINKTYPE_ETHERNET, tsresol=0x80 | 20, tsoffset=100)  # 2^-20 s, +100 s
        + block("<", 0x0BAD, b"unknown block, skipped")
        + epb("<", 0, int(T0) * 10**9 + 5, a)
        + epb("<", 1, 3 << 20 | 1 << 19, ether, orig=1500)
        # obsolete Packet Block on interface 0
        + block("<", 2, struct.pack("<HHIIII", 0, 0, 0, 7, len(b), len(b)) + b)
        # a second section, big-endian, whose interface 0 is Linux SLL with microseconds
        + shb(">")
        + idb(">", LINKTYPE_LOOP)
        + block(">", 3, struct.pack(">I", len(c) + 4) + b"\x00\x00\x00\x02" + c)  # SPB
        + epb(">", 0, 2_500_000, b"\x00\x00\x00\x18" + b)
    )
    path = tmp_path / "hand.pcapng"
    path.write_bytes(data)
    frames = list(read_capture(path))
    assert [f.number for f in frames] == [1, 2, 3, 4, 5]
    assert [f.linktype for f in frames] == [101, 1, 101, LINKTYPE_LOOP, LINKTYPE_LOOP]
    assert frames[0].timestamp == pytest.approx(T0 + 5e-9, abs=1e-6)
    assert frames[1].timestamp == 3.5 + 100 and frames[1].orig_len == 1500
    assert frames[2].timestamp == 7e-9
    assert frames[3].timestamp == 0.0 and frames[3].orig_len == len(c) + 4
    assert frames[4].timestamp == 2.5
    assert [ip_payload(f.linktype, f.data) for f in frames] == [a, bytes(ip4(4)), b, c, b]


def test_pcapng_block_errors(tmp_path: Path) -> None:
    good = shb("<") + idb("<", LINKTYPE_RAW)
    cases = {
        "interface 1": good + epb("<", 1, 0, b"\x45"),
        "bad length": good + struct.pack("<II", 6, 13) + bytes(8),
        "trailing length": good + block("<", 6, bytes(24))[:-4] + struct.pack("<I", 99),
        "byte-order": b"\n\r\r\n" + struct.pack("<I", 28) + b"XXXX" + bytes(16),
        "version": block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)),
    }
    for what, data in cases.items():
        path = tmp_path / "bad.pcapng"
        path.write_bytes(data)
        with pytest.raises(CaptureError, match=what) as err:
            list(read_capture(path))
        assert str(path) in str(err.value) and err.value.offset is not None


# ---------------------------------------------------------------- damaged and foreign files


def collect(path: Path) -> tuple[list[Frame], CaptureError | None]:
    frames: list[Frame] = []
    try:
        for f in read_capture(path):
            frames.append(f)
    except CaptureError as e:
        return frames, e
    return frames, None


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_truncated_files_yield_complete_frames_then_fail(tmp_path: Path, kind: str) -> None:
    pkts = [eth() / ip4(i, size=10 * i) for i in range(4)]
    full = tmp_path / f"full.{kind}"
    if kind == "pcap":
        wrpcap(str(full), pkts)
    else:
        with PcapNgWriter(str(full)) as w:
            for p in pkts:
                w.write(p)
    data = full.read_bytes()
    complete = list(read_capture(full))
    # the file offset where each frame's record ends
    ends = []
    cut = tmp_path / "cut"
    for n in range(1, len(data)):
        cut.write_bytes(data[:n])
        frames, err = collect(cut)
        assert [f.data for f in frames] == [f.data for f in complete[: len(frames)]]
        if err is None:
            ends.append(n)
        else:
            assert str(cut) in str(err)
            assert err.offset is not None and 0 <= err.offset <= n
    # Only cuts at a record boundary read cleanly: after the file header (pcapng: after the
    # SHB and after the IDB) and after each frame but the last (the full file is not cut).
    assert len(ends) == (1 if kind == "pcap" else 2) + len(pkts) - 1


def test_not_a_capture(tmp_path: Path) -> None:
    for content in (b"", b"\x00", b"hello world, not a capture", bytes(100)):
        path = tmp_path / "x.bin"
        path.write_bytes(content)
        with pytest.raises(CaptureError) as err:
            list(read_capture(path))
        assert err.value.offset == 0 and str(path) in str(err.value)
    with pytest.raises(CaptureError, match="cannot open"):
        list(read_capture(tmp_path / "missing.pcap"))
    assert issubclass(CaptureError, IpsecLabError)


PREFIXES = [
    b"",
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),
    struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101),
    shb("<"),
    shb(">") + idb(">", 1),
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=st.sampled_from(PREFIXES), tail=st.binary(max_size=300))
def test_random_bytes_only_raise_capture_error(tmp_path: Path, prefix: bytes, tail: bytes) -> None:
    path = tmp_path / "fuzz"
    path.write_bytes(prefix + tail)
    try:
        for frame in read_capture(path):
            ip_payload(frame.linktype, frame.data)
    except CaptureError:
        pass


# ---------------------------------------------------------------- link layers


def test_ip_payload_link_types() -> None:
    v4, v6 = bytes(ip4()), bytes(ip6())
    assert ip_payload(LINKTYPE_NULL, struct.pack("<I", 2) + v4) == v4
    assert ip_payload(LINKTYPE_NULL, struct.pack(">I", 2) + v4) == v4  # other host byte order
    for af in (10, 24, 28, 30):
        assert ip_payload(LINKTYPE_NULL, struct.pack("<I", af) + v6) == v6
    assert ip_payload(LINKTYPE_LOOP, struct.pack(">I", 24) + v6) == v6
    assert ip_payload(LINKTYPE_NULL, struct.pack("<I", 7) + v4) is None
    assert ip_payload(LINKTYPE_IPV4, v4) == v4 and ip_payload(LINKTYPE_IPV4, v6) is None
    assert ip_payload(LINKTYPE_IPV6, v6) == v6 and ip_payload(LINKTYPE_IPV6, v4) is None
    for lt in (101, 12, 14):
        assert ip_payload(lt, v4) == v4 and ip_payload(lt, v6) == v6
        assert ip_payload(lt, b"\x00" + v4) is None
    # Ethernet announcing IPv4 with an IPv6 packet inside: refused
    assert ip_payload(LINKTYPE_ETHERNET, bytes(eth()) + v6) is None
    assert ip_offset(LINKTYPE_ETHERNET, bytes(eth() / Dot1Q() / Dot1Q() / ip4())) == 22
    for lt in (0, 1, 101, 108, 113, 228, 229, 276, 9999):
        assert ip_payload(lt, b"") is None
        assert ip_payload(lt, b"\x45") in (None, b"\x45")
    assert ip_payload(LINKTYPE_ETHERNET, bytes(eth() / Dot1Q())[:15]) is None
    # an ICMP packet in a 60-byte frame keeps exactly its own bytes
    tiny = IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()
    assert ip_payload(LINKTYPE_ETHERNET, bytes(eth() / tiny) + bytes(18)) == bytes(tiny)


def test_hundred_thousand_frames_quickly(tmp_path: Path) -> None:
    pkt = bytes(ip4(size=100))
    path = tmp_path / "big.pcap"
    write_pcap(path, ((pkt, T0 + i * 1e-4) for i in range(100_000)))
    start = time.perf_counter()
    count = sum(1 for f in read_capture(path) if ip_payload(f.linktype, f.data) is not None)
    elapsed = time.perf_counter() - start
    assert count == 100_000
    # About 0.1 s here; the bound leaves room for a loaded CI machine.
    assert elapsed < 5.0
