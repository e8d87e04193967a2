"""The PAD (RFC 4301 §4.4.3): identity matching, ordered lookup, secrets kept out of output."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from ipseclab.errors import ConfigError
from ipseclab.ipsec.pad import PAD, IdentityMatcher, IdType, PadEntry, parse_der_dn
from ipseclab.ipsec.selectors import Selector

MOON_DN = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strongSwan"),
    x509.NameAttribute(NameOID.COMMON_NAME, "moon.strongswan.org"),
])


def m(text: str) -> IdentityMatcher:
    return IdentityMatcher.parse(text)


def test_ip_identities() -> None:
    assert m("192.0.2.1").id_type is IdType.IPV4_ADDR
    assert m("192.0.2.1").matches(IdType.IPV4_ADDR, bytes([192, 0, 2, 1]))
    assert m("192.0.2.1").matches(1, "192.0.2.1")
    assert not m("192.0.2.1").matches(IdType.IPV4_ADDR, bytes([192, 0, 2, 2]))
    assert m("192.0.2.0/24").matches(IdType.IPV4_ADDR, "192.0.2.200")
    assert m("192.0.2.10-192.0.2.20").matches(IdType.IPV4_ADDR, "192.0.2.20")
    assert not m("192.0.2.10-192.0.2.20").matches(IdType.IPV4_ADDR, "192.0.2.21")
    v6 = m("2001:db8::/32")
    assert v6.id_type is IdType.IPV6_ADDR
    assert v6.matches(IdType.IPV6_ADDR, ipaddress.ip_address("2001:db8::5").packed)
    assert not v6.matches(IdType.IPV4_ADDR, bytes(4))
    assert not v6.matches(IdType.IPV6_ADDR, bytes(4))  # wrong length: no match, no exception
    assert not m("192.0.2.1").matches(IdType.IPV4_ADDR, "2001:db8::1")


def test_fqdn_identities() -> None:
    exact = m("@moon.strongswan.org")
    assert exact.id_type is IdType.FQDN
    assert exact.matches(IdType.FQDN, b"Moon.StrongSwan.org")
    assert exact.matches(IdType.FQDN, "moon.strongswan.org.")
    assert not exact.matches(IdType.FQDN, b"sun.strongswan.org")
    assert not exact.matches(IdType.RFC822_ADDR, b"moon.strongswan.org")
    wild = m("*.example.org")
    assert wild.matches(IdType.FQDN, b"gw.example.org")
    assert wild.matches(IdType.FQDN, b"a.b.example.org")
    assert not wild.matches(IdType.FQDN, b"example.org")
    assert not wild.matches(IdType.FQDN, b"badexample.org")
    assert not wild.matches(IdType.FQDN, b"\xff\xfe")
    assert m("my-gateway.example.org").id_type is IdType.FQDN


def test_rfc822_and_keyid() -> None:
    carol = m("carol@strongswan.org")
    assert carol.id_type is IdType.RFC822_ADDR
    assert carol.matches(IdType.RFC822_ADDR, b"Carol@StrongSwan.org")
    assert not carol.matches(IdType.RFC822_ADDR, b"dave@strongswan.org")
    key = m("@#0a0b0c")
    assert key.id_type is IdType.KEY_ID
    assert key.matches(IdType.KEY_ID, b"\x0a\x0b\x0c")
    assert not key.matches(IdType.KEY_ID, b"\x0a\x0b")
    assert not key.matches(IdType.KEY_ID, "0a0b0c")


def test_dn_identities() -> None:
    dn = m("C=CH, O=strongSwan, CN=moon.strongswan.org")
    assert dn.id_type is IdType.DER_ASN1_DN
    der = MOON_DN.public_bytes()
    assert dn.matches(IdType.DER_ASN1_DN, der)
    assert dn.matches(IdType.DER_ASN1_DN, MOON_DN)
    assert dn.matches(IdType.DER_ASN1_DN, "C=CH,O=strongSwan,CN=moon.strongswan.org")
    # the same name with PrintableString instead of UTF8String still matches
    printable = der.replace(b"\x0c\x0a", b"\x13\x0a").replace(b"\x0c\x13", b"\x13\x13")
    assert printable != der
    assert dn.matches(IdType.DER_ASN1_DN, printable)
    # order matters: a DN is a sequence
    assert not m("CN=moon.strongswan.org, O=strongSwan, C=CH").matches(IdType.DER_ASN1_DN, der)
    assert not dn.matches(IdType.DER_ASN1_DN, der[:-1])
    assert m(r"O=strong\,Swan, CN=x").matches(IdType.DER_ASN1_DN, x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strong,Swan"),
        x509.NameAttribute(NameOID.COMMON_NAME, "x"),
    ]).public_bytes())


def test_parse_der_dn() -> None:
    assert parse_der_dn(MOON_DN.public_bytes()) == (
        (("2.5.4.6", "CH"),), (("2.5.4.10", "strongSwan"),), (("2.5.4.3", "moon.strongswan.org"),))
    assert parse_der_dn(b"") is None
    assert parse_der_dn(b"\x30\x05\x31\x03") is None


@given(st.binary(max_size=80))
def test_parse_der_dn_never_raises(data: bytes) -> None:
    result = parse_der_dn(data)
    assert result is None or isinstance(result, tuple)


def test_any_identity() -> None:
    assert m("%any").matches(IdType.KEY_ID, b"whatever")


@pytest.mark.parametrize("text", ["", "*.*.org", "@#xyz", "C=CH, bogus", "10.0.0.9-10.0.0.1"])
def test_bad_identities(text: str) -> None:
    with pytest.raises(ConfigError):
        IdentityMatcher.parse(text)


def test_lookup_in_order() -> None:
    pad = PAD()
    moon = pad.add(PadEntry("moon.strongswan.org", "psk", b"first-secret", name="moon"))
    wild = pad.add(PadEntry("*.strongswan.org", "pubkey", name="others"))
    subnet = pad.add(PadEntry("192.0.2.0/24", "psk", "second-secret"))
    assert pad.lookup(IdType.FQDN, b"moon.strongswan.org") is moon
    assert pad.lookup(IdType.FQDN, b"sun.strongswan.org") is wild
    assert pad.lookup(IdType.IPV4_ADDR, bytes([192, 0, 2, 9])) is subnet
    assert subnet.psk == b"second-secret"
    assert pad.lookup(IdType.FQDN, b"example.com") is None
    assert pad.lookup(IdType.DER_ASN1_GN, b"\x30\x00") is None
    assert list(pad) == [moon, wild, subnet]
    pad.remove(moon)
    assert pad.lookup(IdType.FQDN, b"moon.strongswan.org") is wild
    assert len(pad) == 2


def test_secrets_never_shown() -> None:
    entry = PadEntry("moon.strongswan.org", "psk", b"s3cr3t-value", name="moon")
    for text in (repr(entry), str(entry), repr(PAD([entry]).lookup(2, b"moon.strongswan.org"))):
        assert "s3cr3t" not in text
    assert "moon.strongswan.org" in str(entry)


def test_entry_validation() -> None:
    with pytest.raises(ConfigError):
        PadEntry("moon.strongswan.org", "psk")
    with pytest.raises(ConfigError):
        PadEntry("moon.strongswan.org", "pubkey", b"x")
    with pytest.raises(ConfigError):
        PadEntry("moon.strongswan.org", "eap")


def test_child_selector_limits() -> None:
    entry = PadEntry("@moon", "pubkey",
                     child_selectors=[Selector.parse("10.1.0.0/16", "10.2.0.0/16")])
    assert entry.permits(Selector.parse("10.1.5.0/24", "10.2.0.0/24", "tcp", dport=80))
    assert not entry.permits(Selector.parse("10.1.0.0/16", "10.3.0.0/16"))
    assert PadEntry("@sun", "pubkey").permits(Selector.parse("%any", "%any"))
    assert "children 10.1.0.0/16 === 10.2.0.0/16" in str(entry)
