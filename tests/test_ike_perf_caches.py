"""The IKE handshake's speed-ups keep behaviour: every cache and table gives what the uncached
path gives, and the parsers that now read at an offset still reject what they rejected."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipseclab.crypto import prf, transforms
from ipseclab.ike import config as config_module
from ipseclab.ike import ike_sa
from ipseclab.ike.constants import HeaderFlag, ProtocolId, TransformType
from ipseclab.ike.keys import IkeSuite
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payloads import (
    EncryptedFragment,
    IDi,
    MalformedMessage,
    Nonce,
    Proposal,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
)


def _address_in_reference(address: str, allowed: list[str]) -> bool:
    """The uncached check as it was written before ``_address_range`` (parses every time)."""
    addr = ipaddress.ip_address(address)
    for text in allowed:
        text = text.strip()
        if text in ("%any", "%any4", "%any6", "0.0.0.0/0", "::/0"):
            if text == "%any" or (text in ("%any4", "0.0.0.0/0")) == (addr.version == 4):
                return True
            continue
        try:
            if "-" in text:
                first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
                if first.version == addr.version and first <= addr <= last:  # type: ignore
                    return True
            elif addr in ipaddress.ip_network(text, strict=False):
                return True
        except ValueError:
            continue
    return False


ALLOWED = ["%any", "%any4", "%any6", "0.0.0.0/0", "::/0", " 192.0.2.1 ", "192.0.2.0/24",
           "192.0.2.10-192.0.2.20", "10.1.0.0/16", "2001:db8::/32", "2001:db8::1-2001:db8::9",
           "gw.example.org", "198.51.100.7"]
ADDRESSES = ["192.0.2.1", "192.0.2.15", "192.0.2.21", "10.1.255.255", "10.2.0.0",
             "198.51.100.7", "2001:db8::5", "2001:db8::a", "2001:db9::1", "::1"]


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("allowed", [[a] for a in ALLOWED] + [["gw.example.org", "10.1.0.0/16"]])
def test_address_in_matches_the_uncached_check(address: str, allowed: list[str]) -> None:
    assert config_module._address_in(address, allowed) == _address_in_reference(address, allowed)


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 32))
def test_address_in_matches_for_any_ipv4_network(address, network, prefix) -> None:
    allowed = [f"{network}/{prefix}"]
    assert config_module._address_in(str(address), allowed) == _address_in_reference(
        str(address), allowed)


def test_flags_table_gives_the_enum_for_every_octet() -> None:
    for value in range(256):
        message = Message(bytes(8), flags=value)
        assert type(message.flags) is HeaderFlag
        assert message.flags == HeaderFlag(value)
    assert Message(bytes(8), flags=HeaderFlag.I | HeaderFlag.R).is_response


def test_parsed_flags_keep_only_i_v_r() -> None:
    data = bytearray(Message(bytes([1] * 8), flags=HeaderFlag.I,
                             payloads=[Nonce(bytes(16))]).to_bytes())
    data[19] = 0xFF  # every bit set: §3.1 says the others MUST be ignored
    message = parse_message(bytes(data))
    assert message.flags == HeaderFlag.I | HeaderFlag.V | HeaderFlag.R
    assert type(message.flags) is HeaderFlag


def test_wireshark_names_are_cached_without_changing_them() -> None:
    suite = IkeSuite(transforms.ENCRYPTION["aes256gcm16"], None, prf.PRF["prfsha256"])
    assert ike_sa._wireshark_encryption(suite) == ike_sa._wireshark_encryption.__wrapped__(suite)
    assert ike_sa._wireshark_encryption(suite) is ike_sa._wireshark_encryption(suite)
    assert ike_sa._wireshark_integrity(suite) == ike_sa._wireshark_integrity.__wrapped__(suite)


def _sa_body() -> bytes:
    return SecurityAssociation([
        Proposal(1, ProtocolId.ESP, b"\x00\x00\x10\x01", [
            Transform.of(TransformType.ENCR, 12, 128), Transform.of(TransformType.INTEG, 12),
            Transform.of(TransformType.ESN, 0)]),
        Proposal(2, ProtocolId.ESP, b"\x00\x00\x10\x01", [
            Transform.of(TransformType.ENCR, 20, 256), Transform.of(TransformType.ESN, 0)]),
    ]).to_bytes()


def test_proposal_parse_at_an_offset_equals_parse_of_the_slice() -> None:
    body = _sa_body()
    first, used, more = Proposal.parse(body)
    assert more
    at_offset = Proposal.parse(body, used)
    sliced = Proposal.parse(body[used:])
    assert at_offset == sliced
    assert at_offset[0].transforms[0].key_length == 256
    assert SecurityAssociation.parse(body).proposals == [first, at_offset[0]]
    assert SecurityAssociation.parse(body).to_bytes() == body


@pytest.mark.parametrize("patch, text", [
    (lambda b: b.__setitem__(0, 1), "proposal Last Substruc is 1"),
    (lambda b: b.__setitem__(3, 200), "proposal length 200 out of bounds"),
    (lambda b: b.__setitem__(7, 4), "proposal announces 4 transforms but holds 3"),
    (lambda b: b.__setitem__(12, 1), "transform Last Substruc is 1"),
    (lambda b: b.__setitem__(15, 7), "transform length 7 out of bounds"),
    (lambda b: b.__setitem__(12 + 12, 0), "transform Last Substruc disagrees"),
])
def test_broken_sa_payloads_are_still_rejected(patch, text: str) -> None:
    body = bytearray(_sa_body())
    patch(body)
    with pytest.raises(MalformedMessage, match=text):
        SecurityAssociation.parse(bytes(body))


def test_traffic_selectors_parse_at_offsets() -> None:
    selectors = [TrafficSelector.from_network("10.1.0.0/24"),
                 TrafficSelector.from_network("2001:db8::/64", 6, 443),
                 TrafficSelector.from_network("10.2.0.0/16", 17, 53)]
    body = TSi(selectors).to_bytes()
    assert TSi.parse(body).selectors == selectors
    broken = bytearray(body)
    broken[4 + 16 + 3] = 39  # second selector's length: 39, not 40
    with pytest.raises(MalformedMessage, match="IPV6_ADDR_RANGE selector length is 39"):
        TSi.parse(bytes(broken))
    with pytest.raises(MalformedMessage, match="length disagrees"):
        TSi.parse(body + b"\x00")


def test_error_texts_are_the_same_when_built_lazily() -> None:
    with pytest.raises(MalformedMessage, match="ID_IPV4_ADDR identity of 5 octets"):
        IDi.parse(b"\x01\x00\x00\x00" + bytes(5))
    with pytest.raises(MalformedMessage, match=r"nonce of 15 octets, not 16\.\.256"):
        Nonce.parse(bytes(15))
    with pytest.raises(MalformedMessage, match="fragment 3 of 2"):
        EncryptedFragment.parse(b"\x00\x03\x00\x02" + bytes(8))
