"""The gateway daemon on real links: network namespaces, veth pairs, TUN, raw sockets.

Each test builds its own namespaces (``iplgw-...``) with plain ``ip netns`` and removes
them, and the processes it started (by PID), in a fixture's teardown, also on failure.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipseclab.capture.pcap import ip_payload, read_capture
from ipseclab.drivers.cli_gateway import main as cli_main

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("ip") is None or not os.path.exists("/dev/net/tun"),
                       reason="needs iproute2 and /dev/net/tun"),
]

DATA = Path(__file__).parent / "data" / "gateway"
ROOT = Path(__file__).parents[1]
_ids = itertools.count()


def sh(*args: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


class Lab:
    """Namespaces, links and processes of one test; :meth:`cleanup` removes all of them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = f"iplgw-{os.getpid() % 10000}-{next(_ids)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def ns(self, name: str) -> str:
        full = f"{self.tag}-{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        sh("ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if,
           "netns", b)
        sh("ip", "-n", a, "link", "set", a_if, "up")
        sh("ip", "-n", b, "link", "set", b_if, "up")

    def addr(self, ns: str, dev: str, cidr: str) -> None:
        extra = ["nodad"] if ":" in cidr else []
        sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev, *extra)

    def run(self, ns: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args, **kw)

    def spawn(self, ns: str, *args: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)
        self.procs.append(proc)
        return proc

    def gateway(self, ns: str, sa_file: str | Path, name: str, *extra: str,
                keying: str = "--manual") -> Path:
        """Start a gateway, wait for its ready line; returns its control socket."""
        sock = self.tmp / f"{name}.sock"
        err = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = self.spawn(ns, sys.executable, "-m", "ipseclab.drivers.cli_gateway", "gateway",
                          keying, str(DATA / sa_file), "--name", name, "--control",
                          str(sock), *extra, stdout=subprocess.PIPE, stderr=err, text=True,
                          cwd=ROOT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                if line.strip() == f"ipseclab gateway {name} ready":
                    return sock
                if not line and proc.poll() is not None:
                    break
        raise AssertionError(f"gateway {name} did not start: "
                             f"{(self.tmp / f'{name}.log').read_text()}")

    @contextlib.contextmanager
    def capture(self, ns: str, dev: str):
        """tcpdump on one interface while the block runs; yields the pcap path."""
        path = self.tmp / f"{ns}-{dev}.pcap"
        # -Z root: tcpdump would otherwise drop to its own user and not write into tmp_path;
        # --immediate-mode: hand over each packet at once, not when a 1 s block is full.
        proc = self.spawn(ns, "tcpdump", "-Z", "root", "--immediate-mode", "-i", dev, "-nn",
                          "-U", "-w", str(path), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.2)[0] and \
                    "listening" in proc.stderr.readline():
                break
        try:
            yield path
        finally:
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            proc.wait(5)

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def lab(tmp_path):
    if shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump")
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()


def ctl(sock: Path, *args: str) -> object:
    proc = sh(sys.executable, "-m", "ipseclab.drivers.cli_gateway", "ctl", "--socket",
              str(sock), *args, "--json")
    return json.loads(proc.stdout)


def sa_by_dir(sock: Path) -> dict[str, dict]:
    return {sa["direction"]: sa for sa in ctl(sock, "list-sas")}


def wire_protocols(pcap: Path) -> list[str]:
    """One word per IP packet of a capture: 'esp', 'udp4500', 'icmp', 'udp', ..."""
    kinds = []
    for frame in read_capture(pcap):
        packet = ip_payload(frame.linktype, frame.data)
        if packet is None:
            continue
        if packet[0] >> 4 == 4:
            proto, off = packet[9], (packet[0] & 0x0F) * 4
        else:
            proto, off = packet[6], 40
            if proto == 0:
                continue  # hop-by-hop options: MLD reports, the link's own business
        name = {50: "esp", 51: "ah", 1: "icmp", 58: "icmpv6", 6: "tcp", 17: "udp"}.get(
            proto, str(proto))
        if proto == 17 and int.from_bytes(packet[off + 2 : off + 4], "big") == 4500:
            name = "udp4500"
        if name == "icmpv6" and packet[off] in (133, 134, 135, 136, 143):
            continue  # neighbour discovery and MLD: the link's own business
        kinds.append(name)
    return kinds


def ping(lab: Lab, ns: str, dst: str, count: int = 3) -> None:
    result = lab.run(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", dst, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- (a) transport mode, host to host ------------------------------------------------------


def test_transport_host_to_host(lab, tmp_path):
    a, b = lab.ns("a"), lab.ns("b")
    lab.link(a, "veth-a", b, "veth-b")
    lab.addr(a, "veth-a", "192.0.2.1/24")
    lab.addr(b, "veth-b", "192.0.2.2/24")
    keylog = tmp_path / "keys"
    sock_a = lab.gateway(a, "transport-a.xfrm", "ta", "--keylog-dir", str(keylog))
    sock_b = lab.gateway(b, "transport-b.xfrm", "tb")
    # The peer's own address is routed into the TUN, the daemon's marked ESP is not.
    assert "192.0.2.2 dev ipsec0" in lab.run(a, "ip", "route", "show", "table", "485").stdout
    with lab.capture(a, "veth-a") as pcap:
        ping(lab, a, "192.0.2.2", 3)
        # TCP too (the kernel's own transport checksums must survive the round trip).
        server = lab.spawn(b, sys.executable, "-c", "import socket; s=socket.create_server("
                           "('192.0.2.2', 7000)); c,_=s.accept(); c.sendall(c.recv(100))")
        time.sleep(0.3)
        echo = lab.run(a, sys.executable, "-c", "import socket; c=socket.create_connection("
                       "('192.0.2.2', 7000), timeout=5); c.sendall(b'hello'); print(c.recv(100))")
        server.wait(5)
    assert echo.stdout.strip() == "b'hello'"
    kinds = wire_protocols(pcap)
    assert kinds.count("esp") >= 6 and set(kinds) == {"esp"}, kinds
    sas = sa_by_dir(sock_a)
    assert sas["out"]["packets"] >= 3 and sas["in"]["packets"] >= 3
    assert sas["out"]["spi"] == "0x00001001" and sas["out"]["algorithms"] == "aes128gcm16"
    assert sa_by_dir(sock_b)["in"]["packets"] == sas["out"]["packets"]
    # Wireshark's key log holds both SAs.
    esp_sa = (keylog / "wireshark" / "esp_sa").read_text()
    assert '"0x00001001"' in esp_sa and '"0x00002001"' in esp_sa
    # flush removes the SAs, the policies and the TUN route; load brings them back.
    assert ctl(sock_a, "flush") == {"states": 2, "policies": 2}
    assert ctl(sock_a, "list-sas") == []
    assert lab.run(a, "ip", "route", "show", "table", "485").stdout.strip() == ""
    assert '"0x00001001"' not in (keylog / "wireshark" / "esp_sa").read_text()
    assert ctl(sock_a, "load", str(DATA / "transport-a.xfrm")) == {"states": 2, "policies": 2}
    # Fresh SAs start at sequence 1 again; the peer's replay window has seen 1..n already,
    # so reload the peer too, as one would after rekeying by hand.
    ctl(sock_b, "flush")
    ctl(sock_b, "load", str(DATA / "transport-b.xfrm"))
    ping(lab, a, "192.0.2.2", 2)
    assert len(ctl(sock_a, "list-policies")) == 2
    # stop: the daemon exits 0 and undoes its rule, route and TUN device.
    assert ctl(sock_a, "stop") == {"stopping": "ta"}
    gw_a = lab.procs[0]
    assert gw_a.wait(10) == 0
    assert "485" not in lab.run(a, "ip", "rule").stdout
    assert "ipsec0" not in lab.run(a, "ip", "link").stdout
    assert not sock_a.exists()


# -- (b), (c) site to site, tunnel mode ------------------------------------------------------


def site_to_site(lab: Lab, suffix: str = "") -> tuple[str, str, str, str, Path, Path]:
    h1, gw1, gw2, h2 = lab.ns("h1"), lab.ns("gw1"), lab.ns("gw2"), lab.ns("h2")
    lab.link(h1, "eth0", gw1, "lan")
    lab.link(gw1, "wan", gw2, "wan")
    lab.link(gw2, "lan", h2, "eth0")
    lab.addr(h1, "eth0", "10.1.0.2/24")
    lab.addr(gw1, "lan", "10.1.0.1/24")
    lab.addr(gw1, "wan", "192.0.2.1/24")
    lab.addr(gw2, "wan", "192.0.2.2/24")
    lab.addr(gw2, "lan", "10.2.0.1/24")
    lab.addr(h2, "eth0", "10.2.0.2/24")
    sh("ip", "-n", h1, "route", "add", "default", "via", "10.1.0.1")
    sh("ip", "-n", h2, "route", "add", "default", "via", "10.2.0.1")
    s1 = lab.gateway(gw1, f"gw1{suffix}.xfrm", "gw1")
    s2 = lab.gateway(gw2, f"gw2{suffix}.xfrm", "gw2")
    return h1, gw1, gw2, h2, s1, s2


def test_site_to_site_tunnel(lab):
    h1, gw1, _gw2, _h2, s1, s2 = site_to_site(lab)
    with lab.capture(gw1, "wan") as pcap:
        ping(lab, h1, "10.2.0.2", 3)
        # A packet as big as the TUN's MTU (1400) still fits the WAN once protected.
        big = lab.run(h1, "ping", "-c", "2", "-s", "1372", "-W", "2", "10.2.0.2", check=False)
    assert big.returncode == 0, big.stdout
    kinds = wire_protocols(pcap)
    assert kinds.count("esp") >= 6 and set(kinds) == {"esp"}, kinds
    out1, in2 = sa_by_dir(s1)["out"], sa_by_dir(s2)["in"]
    assert out1["mode"] == "tunnel" and out1["encap"] is None
    assert in2["packets"] >= 3 and in2["auth_failed"] == 0


def test_site_to_site_udp_encap(lab):
    h1, gw1, _gw2, _h2, s1, _s2 = site_to_site(lab, "-udp")
    with lab.capture(gw1, "wan") as pcap:
        ping(lab, h1, "10.2.0.2", 3)
    kinds = wire_protocols(pcap)
    assert kinds.count("udp4500") >= 6 and set(kinds) == {"udp4500"}, kinds
    sas = sa_by_dir(s1)
    assert sas["out"]["encap"] == "espinudp 4500 4500" and sas["in"]["packets"] >= 3


# -- (d) garbage ---------------------------------------------------------------------------

GARBAGE = """
import os, socket
esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
for n in (0, 3, 7, 40, 200, 1400):                 # random bytes as ESP, some too short
    esp.sendto(os.urandom(n), ('192.0.2.1', 0))
unknown = (0xdeadbeef).to_bytes(4, 'big') + (1).to_bytes(4, 'big') + os.urandom(60)
esp.sendto(unknown, ('192.0.2.1', 0))              # a well-formed ESP header, unknown SPI
bad_icv = (0x2001).to_bytes(4, 'big') + (99).to_bytes(4, 'big') + os.urandom(60)
esp.sendto(bad_icv, ('192.0.2.1', 0))              # a known SPI with a forged ICV
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for payload in (b'', b'\\x01\\x02', os.urandom(100), unknown, bytes(4) + os.urandom(30),
                b'\\xff'):
    udp.sendto(payload, ('192.0.2.1', 4500))       # junk, ESP with unknown SPI, IKE, keepalive
ah = socket.socket(socket.AF_INET, socket.SOCK_RAW, 51)
ah.sendto(os.urandom(30), ('192.0.2.1', 0))
"""


def test_garbage_is_counted_and_forwarding_goes_on(lab):
    h1, _gw1, gw2, _h2, s1, _s2 = site_to_site(lab)
    ping(lab, h1, "10.2.0.2", 1)
    lab.run(gw2, sys.executable, "-c", GARBAGE)
    time.sleep(0.3)
    ping(lab, h1, "10.2.0.2", 2)
    stats = ctl(s1, "stats")
    engine, driver = stats["engine"], stats["driver"]
    assert engine["inbound_no_sa"] >= 3  # unknown SPI raw, unknown SPI in UDP, random SPIs
    assert engine["inbound_malformed"] >= 2  # too short for an ESP header, AH junk
    assert driver["udp_malformed"] >= 2  # empty and 2-byte UDP datagrams
    assert driver["ike_dropped"] == 1 and driver["keepalives"] == 1
    assert driver["internal_errors"] == 0
    assert sa_by_dir(s1)["in"]["auth_failed"] == 1
    assert sa_by_dir(s1)["in"]["packets"] >= 3


def test_sysctls_are_put_back_by_the_run_after_a_sigkill(lab):
    """A killed gateway undoes nothing; the next one finds the old values in its journal."""
    a, b = lab.ns("a"), lab.ns("b")
    lab.link(a, "veth-a", b, "veth-b")
    lab.addr(a, "veth-a", "192.0.2.1/24")

    def forwarding() -> str:
        return lab.run(a, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip()

    lab.run(a, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    sock = lab.gateway(a, "transport-a.xfrm", "sk")
    journal = sock.with_name(sock.name + ".sysctl")
    assert forwarding() == "1"
    assert json.loads(journal.read_text())["sysctls"]["net.ipv4.ip_forward"] == "0"
    killed = lab.procs[-1]
    killed.kill()
    killed.wait(5)
    assert forwarding() == "1" and journal.exists()  # nobody could undo it
    sock = lab.gateway(a, "transport-a.xfrm", "sk")
    assert "restored net.ipv4.ip_forward=0" in (lab.tmp / "sk.log").read_text()
    assert json.loads(journal.read_text())["sysctls"]["net.ipv4.ip_forward"] == "0"
    ctl(sock, "stop")
    lab.procs[-1].wait(10)
    assert forwarding() == "0" and not journal.exists()


# -- (e) IPv6 transport mode ---------------------------------------------------------------


def test_transport_ipv6(lab):
    a, b = lab.ns("a6"), lab.ns("b6")
    lab.link(a, "veth-a", b, "veth-b")
    lab.addr(a, "veth-a", "2001:db8::1/64")
    lab.addr(b, "veth-b", "2001:db8::2/64")
    sock_a = lab.gateway(a, "transport6-a.xfrm", "t6a")
    lab.gateway(b, "transport6-b.xfrm", "t6b")
    with lab.capture(a, "veth-a") as pcap:
        ping(lab, a, "2001:db8::2", 3)
    kinds = wire_protocols(pcap)
    assert kinds.count("esp") >= 6 and set(kinds) == {"esp"}, kinds
    sas = sa_by_dir(sock_a)
    assert sas["out"]["packets"] >= 3 and sas["in"]["packets"] >= 3


WAN4, WAN6 = ("192.0.2.1/24", "192.0.2.2/24"), ("2001:db8::1/64", "2001:db8::2/64")
LAN4 = (("10.1.0.2/24", "10.1.0.1/24"), ("10.2.0.1/24", "10.2.0.2/24"))
LAN6 = (("fd01::2/64", "fd01::1/64"), ("fd02::1/64", "fd02::2/64"))


def site_to_site_families(lab: Lab, tag: str, *, wan6: bool,
                          lan6: bool) -> tuple[str, str, str, str]:
    """h1 - gw1 = WAN = gw2 - h2, each side of the WAN and of the LANs IPv4 or IPv6:
    WAN 192.0.2.0/24 or 2001:db8::/64, LANs 10.1.0.0/24 and 10.2.0.0/24 or fd01::/64 and
    fd02::/64 (a gateway's LAN address is ``.1``/``::1``, the host's ``.2``/``::2``)."""
    h1, gw1, gw2, h2 = (lab.ns(f"{n}{tag}") for n in ("h1", "gw1", "gw2", "h2"))
    lab.link(h1, "eth0", gw1, "lan")
    lab.link(gw1, "wan", gw2, "wan")
    lab.link(gw2, "lan", h2, "eth0")
    wan, ((h1_addr, gw1_lan), (gw2_lan, h2_addr)) = (WAN6 if wan6 else WAN4,
                                                     LAN6 if lan6 else LAN4)
    for ns, dev, cidr in ((h1, "eth0", h1_addr), (gw1, "lan", gw1_lan), (gw1, "wan", wan[0]),
                          (gw2, "wan", wan[1]), (gw2, "lan", gw2_lan), (h2, "eth0", h2_addr)):
        lab.addr(ns, dev, cidr)
    family = "-6" if lan6 else "-4"
    sh("ip", "-n", h1, family, "route", "add", "default", "via", gw1_lan.split("/")[0])
    sh("ip", "-n", h2, family, "route", "add", "default", "via", gw2_lan.split("/")[0])
    return h1, gw1, gw2, h2


def site_to_site_ipv6(lab: Lab, tag: str) -> tuple[str, str, str, str]:
    """h1 - gw1 = WAN 2001:db8::/64 = gw2 - h2, LANs fd01::/64 and fd02::/64."""
    return site_to_site_families(lab, tag, wan6=True, lan6=True)


def test_site_to_site_tunnel_ipv6(lab):
    h1, gw1, gw2, _h2 = site_to_site_ipv6(lab, "-6")
    s1 = lab.gateway(gw1, "gw1-v6.xfrm", "gw61")
    lab.gateway(gw2, "gw2-v6.xfrm", "gw62")
    with lab.capture(gw1, "wan") as pcap:
        ping(lab, h1, "fd02::2", 3)
    kinds = wire_protocols(pcap)
    assert kinds.count("esp") >= 6 and set(kinds) == {"esp"}, kinds
    sas = sa_by_dir(s1)
    assert sas["out"]["mode"] == "tunnel" and sas["in"]["packets"] >= 3


def test_ipv6_outer_packets_too_big_for_the_wan_leave_in_fragments(lab):
    """WAN MTU 1280 (IPv6's minimum) under a TUN MTU of 1400: a 1400-octet inner packet
    becomes ~1460 octets of ESP in IPv6, which the raw socket refuses (EMSGSIZE). The gateway
    sends it as IPv6 fragments (RFC 8200 §4.5) and the ping arrives; it was lost before."""
    h1, gw1, gw2, _h2 = site_to_site_ipv6(lab, "-6f")
    for ns in (gw1, gw2):
        lab.run(ns, "ip", "link", "set", "wan", "mtu", "1280")
    s1 = lab.gateway(gw1, "gw1-v6.xfrm", "gw61f")
    lab.gateway(gw2, "gw2-v6.xfrm", "gw62f")
    with lab.capture(gw1, "wan") as pcap:
        result = lab.run(h1, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "1300",
                         "fd02::2", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    stats = ctl(s1, "stats")["driver"]
    assert stats["fragmented"] >= 3 and stats["send_errors"] == 0, stats
    out = sh("tcpdump", "-nr", str(pcap), "-v", "ip6 and src 2001:db8::1").stdout
    # 1280 = 40 + 8 + 1232: first fragments of 1232 octets, each packet its own identification
    firsts = re.findall(r"frag \((0x[0-9a-f]+):0\|1232\) ESP", out)
    assert len(firsts) >= 3 and len(set(firsts)) == len(firsts), out


IKE6 = """\
connections {{
  v6 {{
    local_addrs = {me}
    remote_addrs = {peer}
    proposals = aes128gcm16-prfsha256-x25519
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {peer}
    }}
    children {{
      net {{
        local_ts = {my_lan}
        remote_ts = {peer_lan}
        esp_proposals = aes128gcm16
        {start}
      }}
    }}
  }}
}}
secrets {{
  ike-v6 {{
    id-1 = {me}
    id-2 = {peer}
    secret = "ipv6 lab secret"
  }}
}}
"""


def test_ikev2_over_ipv6(lab, tmp_path):
    """IKE and ESP with IPv6 outer addresses, between two ipseclab gateways (RFC 7296 does
    not care about the family; the sockets, NAT-D hashes and identities do)."""
    h1, gw1, gw2, _h2 = site_to_site_ipv6(lab, "-ike6")
    confs = []
    for n, (me, peer, lans, start) in enumerate((
            ("2001:db8::1", "2001:db8::2", ("fd01::/64", "fd02::/64"), "start_action = start"),
            ("2001:db8::2", "2001:db8::1", ("fd02::/64", "fd01::/64"), "")), 1):
        conf = tmp_path / f"gw7{n}.swanctl.conf"
        conf.write_text(IKE6.format(me=me, peer=peer, my_lan=lans[0], peer_lan=lans[1],
                                    start=start))
        confs.append(conf)
    with lab.capture(gw1, "wan") as pcap:
        s2 = lab.gateway(gw2, confs[1], "gw72", keying="--swanctl")
        s1 = lab.gateway(gw1, confs[0], "gw71", keying="--swanctl")
        deadline = time.monotonic() + 10
        while len(ctl(s1, "list-sas")["sas"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        ping(lab, h1, "fd02::2", 3)
    kinds = wire_protocols(pcap)
    assert kinds.count("esp") >= 6 and "udp" in kinds, kinds  # IKE on 500, then ESP
    (ike,) = ctl(s1, "list-sas")["ike_sas"]
    assert ike["initiator"] and ike["remote"][0] == "2001:db8::2", ike
    sas = {sa["direction"]: sa for sa in ctl(s1, "list-sas")["sas"]}
    assert sas["out"]["dst"] == "2001:db8::2" and sas["in"]["packets"] >= 3
    assert all(sa["packets"] >= 3 for sa in ctl(s2, "list-sas")["sas"])


def test_ikev2_and_esp_over_ipv6_against_strongswan(lab, tmp_path):
    """The same IPv6 site-to-site, strongSwan (charon with kernel-libipsec) on gw2: IKE over
    IPv6 and ESP in UDP 4500 over IPv6 (kernel-libipsec always encapsulates), pings both
    ways through charon's userspace ESP."""
    against_strongswan_across(lab, tmp_path, wan6=True, lan6=True)


@pytest.mark.parametrize(("wan6", "lan6"), [pytest.param(False, True, id="ipv6-over-ipv4"),
                                            pytest.param(True, False, id="ipv4-over-ipv6")])
def test_inner_family_differs_from_outer_against_strongswan(lab, tmp_path, wan6, lan6):
    """Tunnel mode does not tie the inner family to the outer one (RFC 4301 §4.1, the Next
    Header of the ESP trailer is 41 or 4): IPv6 LANs over an IPv4 WAN and IPv4 LANs over an
    IPv6 WAN, between our gateway and charon, pinged both ways."""
    against_strongswan_across(lab, tmp_path, wan6=wan6, lan6=lan6)


def against_strongswan_across(lab: Lab, tmp_path: Path, *, wan6: bool, lan6: bool) -> None:
    """gw1 runs ipseclab (initiator), gw2 charon with kernel-libipsec; IKE on the WAN's
    family, a child SA for the LANs' family; h1 and h2 ping each other through it."""
    from ipseclab.lab import strongswan

    if not strongswan.available():
        pytest.skip("charon-systemd is not installed")
    tag = f"-sw{'6' if wan6 else '4'}{'6' if lan6 else '4'}"
    h1, gw1, gw2, h2 = site_to_site_families(lab, tag, wan6=wan6, lan6=lan6)
    (me, peer) = (c.split("/")[0] for c in (WAN6 if wan6 else WAN4))
    lans = ("fd01::/64", "fd02::/64") if lan6 else ("10.1.0.0/24", "10.2.0.0/24")
    ours = tmp_path / "gw1.swanctl.conf"
    ours.write_text(IKE6.format(me=me, peer=peer, my_lan=lans[0], peer_lan=lans[1],
                                start="start_action = start"))
    # charon forwards between its LAN and TUN only if told to; ours sets both itself.
    lab.run(gw2, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1")
    charon = strongswan.Charon(tmp_path / "charon", lambda args, **kw: subprocess.Popen(
        ["ip", "netns", "exec", gw2, *args], **kw))
    charon.start()
    try:
        charon.install_config("", IKE6.format(me=peer, peer=me, my_lan=lans[1],
                                              peer_lan=lans[0], start=""))
        charon.load_all()
        with lab.capture(gw1, "wan") as pcap:
            s1 = lab.gateway(gw1, ours, f"gw1{tag}", keying="--swanctl")
            deadline = time.monotonic() + 10
            while len(ctl(s1, "list-sas")["sas"]) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            h1_addr, h2_addr = ("fd01::2", "fd02::2") if lan6 else ("10.1.0.2", "10.2.0.2")
            ping(lab, h1, h2_addr, 3)
            ping(lab, h2, h1_addr, 3)
        (sa,) = charon.list_sas()
        assert sa["state"] == "ESTABLISHED" and sa["remote-host"] == me, sa
        (child,) = sa["child-sas"].values()
        assert int(child["packets-in"]) >= 6 and int(child["packets-out"]) >= 6, child
        assert child["local-ts"] == [lans[1]] and child["remote-ts"] == [lans[0]], child
        sas = {s["direction"]: s for s in ctl(s1, "list-sas")["sas"]}
        assert sas["out"]["dst"] == peer and sas["out"]["encap"], sas
        assert sas["in"]["packets"] >= 6 and sas["out"]["packets"] >= 6, sas
    finally:
        charon.stop()
    # Only IKE and UDP-encapsulated ESP on the WAN: no inner packet leaks in the clear.
    kinds = wire_protocols(pcap)
    assert "esp" not in kinds and kinds.count("udp4500") >= 12, kinds
    assert not {"icmp", "icmpv6"} & set(kinds), kinds


# -- ctl without a daemon (no namespaces, but kept with the others) ------------------------


def test_ctl_without_daemon(tmp_path, capsys):
    code = cli_main(["ctl", "--socket", str(tmp_path / "none.sock"), "list-sas"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("ipseclab: error: no gateway at") and "\n" not in err
