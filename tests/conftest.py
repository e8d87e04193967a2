"""Shared fixtures: published vectors, and helpers that build SAs for tests."""

from __future__ import annotations

import json
import os
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


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0
