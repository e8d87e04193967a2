"""One address-range reader for the SPD's traffic selectors and the PAD's identities."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipseclab.errors import ConfigError
from ipseclab.ipsec import pad, selectors
from ipseclab.ipsec.pad import IdentityMatcher, IdType
from ipseclab.ipsec.selectors import SelectorError, TrafficSelector, parse_address_range


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.7", (4, 0xC0000207, 0xC0000207)),
    ("10.1.0.0/24", (4, 0x0A010000, 0x0A0100FF)),
    ("10.1.0.9/24", (4, 0x0A010000, 0x0A0100FF)),  # host bits allowed, as swanctl does
    ("10.1.0.5 - 10.1.0.9", (4, 0x0A010005, 0x0A010009)),
    ("2001:db8::/127", (6, 0x20010DB8 << 96, (0x20010DB8 << 96) + 1)),
    ("my-gw.example", None),  # a '-' but no address: not an address at all
    ("moon.strongswan.org", None),
    ("10.0.0.0/33", None),
    ("", None),
])
def test_parse_address_range(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_address_range(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("10.0.0.9-10.0.0.1", "starts after it ends"),
    ("10.0.0.1-2001:db8::1", "mixes IPv4 and IPv6"),
])
def test_a_range_that_cannot_exist_raises(text: str, message: str) -> None:
    for parse in (parse_address_range, TrafficSelector.parse, IdentityMatcher.parse):
        with pytest.raises(SelectorError, match=message) as info:
            parse(text)
        assert isinstance(info.value, ConfigError)  # one clear line for the user


def test_both_readers_use_the_shared_function() -> None:
    assert not hasattr(pad, "_parse_address_range")
    assert pad.parse_address_range is selectors.parse_address_range


def test_pad_falls_back_to_fqdn_and_selectors_refuse() -> None:
    matcher = IdentityMatcher.parse("my-gw.example")
    assert matcher.id_type is IdType.FQDN and matcher.value == "my-gw.example"
    with pytest.raises(SelectorError, match="not an address"):
        TrafficSelector.parse("my-gw.example")
    v6 = IdentityMatcher.parse("2001:db8::/64")
    assert v6.id_type is IdType.IPV6_ADDR
    assert TrafficSelector.parse("%any6").version == 6


@given(st.ip_addresses(), st.ip_addresses())
def test_ranges_agree_with_ipaddress(a: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                     b: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    text = f"{a}-{b}"
    if a.version != b.version or int(a) > int(b):
        with pytest.raises(SelectorError):
            parse_address_range(text)
    else:
        assert parse_address_range(text) == (a.version, int(a), int(b))
