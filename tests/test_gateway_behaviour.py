"""What a tunnel gateway must get right beyond ESP itself, checked as strongSwan does it.

strongSwan 5.9.8 with kernel-libipsec is the reference (``impl: strongswan`` in the lab).

* Outer fragmentation (RFC 4301 §8.1): a WAN link smaller than the TUN MTU plus the tunnel
  overhead. strongSwan's ESP leaves by a UDP socket, which the kernel fragments; ours leaves
  by a raw ``IP_HDRINCL`` socket, which never fragments (EMSGSIZE), so every large packet
  was dropped and TCP stalled until the gateway fragmented the outer packet itself
  (:func:`ipseclab.ipsec.ip.fragment_ipv4`).
* The rest of a gateway's manners, in one short lab: ICMP "fragmentation needed" with the
  TUN MTU for a DF packet that does not fit; inner TTL decremented once by each gateway;
  the inner DS field copied to the outer header (RFC 4301 §5.1.2.1, RFC 6040 §4.1 normal
  mode); an ICMP error from the far LAN back through the tunnel; the gateways' own WAN
  traffic neither swallowed by the TUN nor protected.

The unit tests need no root; the lab tests run Mininet (root).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.ipsec import ip

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def _packet(length: int, *, options: bytes = b"", df: bool = True, ident: int = 0x1234) -> bytes:
    """An IPv4 packet of ``length`` octets carrying ESP, with ``options`` in its header."""
    ihl = 20 + len(options)
    payload = bytes(i & 0xFF for i in range(length - ihl))
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl // 4, 0xB8, length, ident,
                                0x4000 if df else 0, 64, ip.PROTO_ESP, 0,
                                bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])) + options)
    struct.pack_into("!H", hdr, 10, ip.checksum(bytes(hdr)))
    return bytes(hdr) + payload


def _reassemble(fragments: list[bytes]) -> tuple[bytes, bytes]:
    """The first fragment's header and the data of all fragments put back in place."""
    data = bytearray()
    for f in fragments:
        ihl = (f[0] & 0x0F) * 4
        offset = (struct.unpack_from("!H", f, 6)[0] & 0x1FFF) * 8
        assert len(data) == offset, "fragments must follow each other without a gap"
        data += f[ihl:]
    first = fragments[0]
    return first[: (first[0] & 0x0F) * 4], bytes(data)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(20, 9000), mtu=st.integers(68, 1500))
def test_fragments_fit_the_mtu_and_reassemble(length: int, mtu: int) -> None:
    packet = _packet(length)
    fragments = ip.fragment_ipv4(packet, mtu)
    if length <= mtu:
        assert fragments == [packet]
        return
    assert all(len(f) <= mtu for f in fragments)
    for i, f in enumerate(fragments):
        flags = struct.unpack_from("!H", f, 6)[0]
        assert flags & 0x4000 == 0  # DF cleared: these are fragments
        assert bool(flags & 0x2000) == (i < len(fragments) - 1)  # MF on all but the last
        assert struct.unpack_from("!H", f, 2)[0] == len(f)
        assert ip.checksum(f[:20]) == 0
        assert f[4:6] == packet[4:6] and f[1] == packet[1] and f[8:10] == packet[8:10]
    assert all((len(f) - 20) % 8 == 0 for f in fragments[:-1])
    _, data = _reassemble(fragments)
    assert data == packet[20:]


def test_fragments_match_scapy() -> None:
    from scapy.layers.inet import IP, defragment

    packet = _packet(3000)
    fragments = [IP(f) for f in ip.fragment_ipv4(packet, 1400)]
    assert [len(f) for f in fragments] == [1396, 1396, 248]
    (whole,) = defragment(fragments)
    assert bytes(whole)[20:] == packet[20:] and whole.src == "192.0.2.1"


def test_only_copied_options_go_into_later_fragments() -> None:
    # Security (130, copied) and Record Route (7, not copied), then End of List.
    security = bytes([130, 11]) + bytes(9)
    record_route = bytes([7, 7, 4]) + bytes(4)
    packet = _packet(1000, options=security + record_route + bytes(2))
    fragments = ip.fragment_ipv4(packet, 600)
    first = fragments[0]
    assert first[0] == 0x4A and first[4:6] == packet[4:6] and first[12:40] == packet[12:40]
    for f in fragments[1:]:
        assert f[0] == 0x48  # 20 + 12 octets: Security, padded to a multiple of 4
        assert f[20:32] == security + b"\x00"
        assert ip.checksum(f[:32]) == 0
    assert _reassemble(fragments)[1] == packet[40:]


def test_a_fragment_is_fragmented_again_in_place() -> None:
    # Offset 100 (800 octets) with MF set: the pieces keep the offset base and MF.
    packet = bytearray(_packet(1020, df=False))
    struct.pack_into("!H", packet, 6, 0x2000 | 100)
    packet[10:12] = b"\x00\x00"
    struct.pack_into("!H", packet, 10, ip.checksum(bytes(packet[:20])))
    fragments = ip.fragment_ipv4(bytes(packet), 524)
    offsets = [struct.unpack_from("!H", f, 6)[0] for f in fragments]
    assert offsets == [0x2000 | 100, 0x2000 | 163]  # 504 octets, then the rest


@pytest.mark.parametrize("packet, mtu", [(b"", 1500), (b"\x60" + bytes(39), 1500),
                                         (_packet(100)[:50], 1500), (_packet(100), 27)])
def test_bad_input_is_malformed(packet: bytes, mtu: int) -> None:
    with pytest.raises(ip.MalformedIP):
        ip.fragment_ipv4(packet, mtu)



# RFC 6040 §4.2, Figure 4: the inner ECN field after decapsulation, None for drop; keys
# and columns are code points (0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE), by inner and by outer.
RFC6040 = {0: (0, 0, 0, None), 1: (1, 1, 1, 3), 2: (2, 1, 2, 3), 3: (3, 3, 3, 3)}


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("inner", [0, 1, 2, 3])
@pytest.mark.parametrize("outer", [0, 1, 2, 3])
def test_ecn_decapsulation_follows_rfc6040(version: int, inner: int, outer: int) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    dscp = 0x2E << 2  # EF, which must survive
    layer = (IP(src="10.1.0.10", dst="10.2.0.10", tos=dscp | inner) if version == 4
             else IPv6(src="2001:db8:1::10", dst="2001:db8:2::10", tc=dscp | inner))
    packet = bytes(layer / UDP(sport=1, dport=2) / b"x")
    out = ip.ecn_decapsulate(dscp | outer, packet)
    wanted = RFC6040[inner][outer]
    if wanted is None:
        assert out is None
        return
    assert out is not None and ip.traffic_class(out) == dscp | wanted
    assert out[2:] == packet[2:] if version == 6 else out[:1] + out[2:10] + out[12:] == \
        packet[:1] + packet[2:10] + packet[12:]
    if version == 4:
        assert ip.checksum(out[:20]) == 0


def test_engine_carries_outer_ce_into_the_inner_packet() -> None:
    """A router on the WAN marks the outer header CE; the gateway's LAN sees CE (the fast
    path, AES-GCM over IPv4) and a Not-ECT packet so marked is dropped, not delivered."""
    sys.path.insert(0, str(Path(__file__).parent))
    from scapy.layers.inet import ICMP, IP
    from test_engine import TUNNEL, engines

    gw1, gw2 = engines(TUNNEL)
    for inner_ecn, wanted in ((2, 3), (0, None)):
        ping = bytes(IP(src="10.1.0.10", dst="10.2.0.10", tos=0xB8 | inner_ecn) / ICMP())
        wire = bytearray(gw1.outbound(ping).packet)
        assert wire[1] == 0xB8 | inner_ecn  # DSCP and ECN copied out (RFC 6040 §4.1)
        wire[1] |= 3  # congestion experienced on the way
        wire[10:12] = b"\x00\x00"
        struct.pack_into("!H", wire, 10, ip.checksum(bytes(wire[:20])))
        result = gw2.inbound(bytes(wire))
        if wanted is None:
            assert result.status.value == "malformed" and "RFC 6040" in result.detail
            continue
        assert result.status.value == "ok", result.detail
        assert result.inner[1] == 0xB8 | 3 and ip.checksum(result.inner[:20]) == 0
        assert IP(result.inner)[ICMP].type == 8



def test_engine_carries_outer_ce_from_a_udp_4500_datagram() -> None:
    """ESP in UDP reaches the gateway by a UDP socket, without its IP header: the outer
    TOS comes as ``outer_tc`` (the socket's IP_RECVTOS)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from scapy.layers.inet import ICMP, IP
    from test_engine import TUNNEL, engines

    text = TUNNEL.replace("mode tunnel aead", "mode tunnel encap espinudp 4500 4500 0.0.0.0 aead")
    assert text != TUNNEL
    gw1, gw2 = engines(text)
    ping = bytes(IP(src="10.1.0.10", dst="10.2.0.10", tos=0x01) / ICMP())
    wire = gw1.outbound(ping).packet
    datagram = wire[28:]  # past the outer IPv4 and UDP headers, as the socket gives it
    src, dst = ip.as_address("192.0.2.1"), ip.as_address("192.0.2.2")
    assert gw2.inbound_datagram(datagram, src, dst).inner[1] == 0x01
    gw1, gw2 = engines(text)
    datagram = gw1.outbound(ping).packet[28:]
    result = gw2.inbound_datagram(datagram, src, dst, outer_tc=0x03)
    assert result.status.value == "ok" and result.inner[1] == 0x03


def test_udp_socket_reports_the_tos_it_received() -> None:
    import socket

    from ipseclab.drivers.gateway_sockets import traffic_class

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2)
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB9)
        tx.sendto(b"x", rx.getsockname())
        _, ancdata, _, _ = rx.recvmsg(100, 128)
    assert traffic_class(ancdata) == 0xB9
    assert traffic_class([]) == 0


# -- lab ---------------------------------------------------------------------------------

def _lab(tmp_path: Path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_ike_gateway import ipseclab_gateways

    from ipseclab.lab.api import Lab

    gateways = ipseclab_gateways(tmp_path, "start_action = trap")
    return Lab("site-to-site", tmp_path / "lab", gateways)


def _stats(lab, node: str) -> dict:
    from test_ike_gateway import ctl

    return ctl(lab, node, "stats")["driver"]


@pytest.mark.root
@needs_root
def test_small_wan_fragments_the_outer_packet_and_tcp_flows(tmp_path: Path) -> None:
    """WAN MTU 1400 under a TUN MTU of 1400: 1400-octet inner packets become ~1460 octets
    of ESP. With DF set or not, they reach h2 (the outer packet in fragments), and so does
    a TCP stream (it stalled: every full-sized segment was lost without an ICMP error)."""
    with _lab(tmp_path) as lab:
        for gw in ("gw1", "gw2"):
            lab.cmd(gw, "ip link set eth1 mtu 1400")
        assert lab.ping("h1", "h2", count=3, interval=0.3).received >= 2  # SA up on trap
        with lab.capture("wan") as pcap:
            full = lab.cmd("h1", "ping -n -q -c 2 -i 0.2 -W 1 -M do -s 1372 10.2.0.10")
            big = lab.cmd("h1", "ping -n -q -c 2 -i 0.2 -W 1 -M dont -s 3000 10.2.0.10")
        tcp = lab.iperf3("h1", "h2", seconds=1)
        stats = _stats(lab, "gw1")
    assert " 2 received" in full, full
    assert " 2 received" in big, big
    assert tcp.bits_per_second > 1e6, tcp
    assert stats["fragmented"] >= 4 and stats["send_errors"] == 0, stats
    out = subprocess.run(["tcpdump", "-nr", str(pcap), "-v",
                          "src 192.0.2.1 and ip[6] & 0x20 != 0"],
                         capture_output=True, text=True, timeout=30).stdout
    assert re.search(r"proto ESP \(50\), length 1396\)", out), out  # 1400 - 4: 8-octet units



@pytest.mark.root
@needs_root
def test_gateway_manners_match_strongswan(tmp_path: Path) -> None:
    """What strongSwan with kernel-libipsec does too (checked against it by hand, see the
    module docstring), on a 1500-octet WAN with a 1400-octet TUN."""
    udp_probe = ("import socket; s = socket.socket(2, 2); s.settimeout(2);"
                 " s.connect(('10.2.0.10', 9)); s.send(b'x')\n"
                 "try:\n    s.recv(10)\nexcept OSError as e:\n    print(type(e).__name__)")
    with _lab(tmp_path) as lab:
        for gw in ("gw1", "gw2"):  # the lab turns IPv6 off on IPv4-only links
            lab.cmd(gw, "sysctl -qw net.ipv6.conf.eth1.accept_dad=0"
                        " net.ipv6.conf.eth1.disable_ipv6=0")
        assert lab.ping("h1", "h2", count=3, interval=0.3).received >= 2  # SA up on trap
        with lab.capture("wan") as pcap:
            too_big = lab.cmd("h1", "ping -n -c 1 -W 1 -M do -s 1472 10.2.0.10")
            ttl1 = lab.cmd("h1", "ping -n -c 1 -W 1 -t 1 10.2.0.10")
            ttl2 = lab.cmd("h1", "ping -n -c 1 -W 1 -t 2 10.2.0.10")
            ttl3 = lab.cmd("h1", "ping -n -c 1 -W 1 -t 3 10.2.0.10")
            ef = lab.cmd("h1", "ping -n -q -c 2 -i 0.2 -W 1 -Q 0xb8 10.2.0.10")
            refused = lab.cmd("h1", sys.executable, "-c", udp_probe)
            wan = lab.cmd("gw1", "ping -n -q -c 2 -i 0.2 -W 1 192.0.2.2")
            own = lab.cmd("gw1", "ping -n -q -c 2 -i 0.2 -W 1 10.2.0.10")
            # Neighbour discovery on the WAN: gw1 finds gw2's link-local address.
            local = re.search(r"fe80::[0-9a-f:]+", lab.cmd("gw2", "ip -6 addr show dev eth1"))
            assert local, "gw2 has no link-local address on eth1"
            nd = lab.cmd("gw1", f"ping -6 -n -c 2 -i 0.2 -W 1 {local[0]}%eth1")
    # RFC 1191: the DF packet that does not fit the TUN is refused with its MTU.
    assert "From 10.1.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)" in too_big, too_big
    # Each gateway is one router hop: TTL decremented once by each (traceroute sees both).
    assert "From 10.1.0.1 icmp_seq=1 Time to live exceeded" in ttl1, ttl1
    assert "From 10.2.0.1 icmp_seq=1 Time to live exceeded" in ttl2, ttl2
    assert "ttl=62" in ttl3, ttl3
    assert " 2 received" in ef and " 2 received" in wan and " 2 received" in own
    assert " 2 received" in nd, nd
    # An ICMP error from the far LAN comes back through the tunnel (port unreachable).
    assert "ConnectionRefusedError" in refused, refused

    def wire(expr: str) -> str:
        return subprocess.run(["tcpdump", "-nr", str(pcap), "-v", expr], capture_output=True,
                              text=True, timeout=30).stdout
    # RFC 4301 §5.1.2.1: the inner DS field is copied to the outer header.
    assert wire("src 192.0.2.1 and esp and ip[1] == 0xb8").count("proto ESP") == 2
    # The gateways' own WAN traffic is neither swallowed nor protected; LAN traffic, the
    # gateway's own included, never crosses the WAN in the clear.
    assert wire("icmp and host 192.0.2.1 and host 192.0.2.2").count("echo reply") == 2
    assert "ICMP" not in wire("icmp and net 10.0.0.0/8")
