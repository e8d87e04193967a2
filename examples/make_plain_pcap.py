"""Write examples/plain.pcap, the plaintext capture of the README's encap/decode example.

    .venv/bin/python examples/make_plain_pcap.py

Four frames as h1 (10.1.0.10) on LAN 1 of site-to-site.xfrm would see them: a ping to h2
and its reply, a UDP datagram to h2, and an ARP request. The ping and the UDP datagram
match the outbound policy (10.1.0.0/24 -> 10.2.0.0/24) and leave protected; the reply
matches no outbound policy and stays as it is (Linux's default, bypass); ARP is not IP.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

H1_MAC, GW1_MAC = "02:00:00:01:00:10", "02:00:00:01:00:01"


def frames() -> list:
    out = Ether(src=H1_MAC, dst=GW1_MAC)
    back = Ether(src=GW1_MAC, dst=H1_MAC)
    frames = [
        out / IP(src="10.1.0.10", dst="10.2.0.10", id=1) / ICMP(id=7, seq=1)
        / Raw(b"ipseclab example: ping"),
        back / IP(src="10.2.0.10", dst="10.1.0.10", id=2) / ICMP(type=0, id=7, seq=1)
        / Raw(b"ipseclab example: ping"),
        out / IP(src="10.1.0.10", dst="10.2.0.10", id=3) / UDP(sport=40000, dport=5000)
        / Raw(b"ipseclab example: udp"),
        Ether(src=H1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=H1_MAC, psrc="10.1.0.10",
                                                         pdst="10.1.0.1"),
    ]
    for i, frame in enumerate(frames):
        frame.time = 1_800_000_000 + i / 10  # fixed times: the file is the same every run
    return frames


if __name__ == "__main__":
    path = Path(__file__).resolve().parent / "plain.pcap"
    wrpcap(str(path), frames())
    print(path)
