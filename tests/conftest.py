"""Shared fixtures: published vectors, and helpers that build SAs for tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import scapy.layers.inet6
import scapy.layers.l2

from ipseclab.crypto import transforms
from ipseclab.ipsec.sa import SecurityAssociation

DATA = Path(__file__).parent / "data"


def _no_resolution(*args, **kwargs):
    raise RuntimeError("a test built Ether() without addresses: scapy would send ARP/ND on the"
                       " host's network; give src and dst MAC addresses explicitly")


# Tests send nothing outside the namespaces they create, not even an ARP request.
scapy.layers.l2.getmacbyip = _no_resolution
scapy.layers.inet6.getmacbyip6 = _no_resolution


def vectors(name: str) -> list[dict]:
    """The vectors of one JSON file copied from shared/vectors (see its README)."""
    with open(DATA / "vectors" / f"{name}.json") as f:
        return json.load(f)["vectors"]


def sa_pair(enc: str | None, integ: str | None, *, mode: str = "transport", v6: bool = False,
            protocol: str = "esp", **kw) -> tuple[SecurityAssociation, SecurityAssociation]:
    """Two SAs with the same random keys: one to send with, one to receive with."""
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("192.0.2.1", "192.0.2.2")
    e = transforms.encryption(enc) if enc else None
    i = transforms.integrity(integ) if integ else None
    args = dict(spi=0x1000, src=src, dst=dst, protocol=protocol, mode=mode, encryption=e,
                encryption_key=os.urandom(e.keymat_size) if e else b"", integrity=i,
                integrity_key=os.urandom(i.key_size) if i else b"", **kw)
    return SecurityAssociation(**args), SecurityAssociation(**args)


def ns_run(ns: str, *args: str) -> None:
    """``ip -n NS ARGS``, failing loudly."""
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


@contextlib.contextmanager
def peer_namespaces(prefix: str, ours_addr: str, theirs_addr: str,
                    lans: tuple[str | tuple[str, ...], str | tuple[str, ...]] = (
                        "10.1.0.1/24", "10.2.0.1/24")):
    """Two namespaces joined by a veth ``wan0`` (/24, or /64 for IPv6), each with a LAN
    address on ``lo``.

    ``ours`` gets ``lans[0]`` (10.1.0.1/24) and ``theirs`` ``lans[1]`` (10.2.0.1/24) on
    ``lo`` (kernel-libipsec routes the remote LAN from an address of the local one); a tuple
    of addresses puts each of them there (``("10.1.0.1/24", "fd01::1/64")``: charon routes
    IPv6 selectors only from an IPv6 address of its own, whatever the IKE SA's family). The veth
    is created straight inside the namespaces, so nothing is named in the root namespace;
    both go again, also on failure.
    """
    tag = os.getpid() % 100000
    ours, theirs = f"{prefix}-{tag}-o", f"{prefix}-{tag}-t"
    try:
        for ns in (ours, theirs):
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "link", "add", "wan0", "netns", ours, "type", "veth", "peer",
                        "name", "wan0", "netns", theirs], check=True, capture_output=True)
        for ns, addr, lan in ((ours, ours_addr, lans[0]), (theirs, theirs_addr, lans[1])):
            if ":" in addr:  # IPv6: a /64, and no duplicate address detection to wait for
                ns_run(ns, "addr", "add", f"{addr}/64", "dev", "wan0", "nodad")
            else:
                ns_run(ns, "addr", "add", f"{addr}/24", "dev", "wan0")
            ns_run(ns, "link", "set", "wan0", "up")
            ns_run(ns, "link", "set", "lo", "up")
            for cidr in (lan,) if isinstance(lan, str) else lan:
                ns_run(ns, "addr", "add", cidr, "dev", "lo")
        yield ours, theirs
    finally:
        for ns in (ours, theirs):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0
