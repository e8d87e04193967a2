"""strongSwan proposal strings: parsing, printing, errors, transforms and selection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipseclab.crypto import proposals as P
from ipseclab.crypto.proposals import Proposal, parse_proposals, select_proposal
from ipseclab.errors import ConfigError, UnknownAlgorithm


@pytest.mark.parametrize(("text", "protocol", "canonical"), [
    ("aes128gcm16-prfsha256-x25519", "ike", "aes128gcm16-prfsha256-x25519"),
    ("aes256-sha256-modp2048", "ike", "aes256-sha256-prfsha256-modp2048"),
    ("aes128-sha1-modp1024,aes128gcm16-prfsha256-ecp256", "ike",
     "aes128-sha1-prfsha1-modp1024,aes128gcm16-prfsha256-ecp256"),
    ("aes256gcm16-prfsha384-ecp384-aes192gcm16-prfsha256-modp3072", "ike",
     "aes256gcm16-aes192gcm16-prfsha384-prfsha256-ecp384-modp3072"),
    ("aes128-sha256-sha1-x25519", "ike", "aes128-sha256-sha1-prfsha256-prfsha1-x25519"),
    ("aes128-sha256-prfsha512-x25519", "ike", "aes128-sha256-prfsha512-x25519"),
    ("aes128gcm16-esn", "esp", "aes128gcm16-esn"),
    ("aes128gcm16-esn-noesn", "esp", "aes128gcm16-esn-noesn"),
    ("aes128gcm16", "esp", "aes128gcm16"),
    ("aes256-sha256-ecp256", "esp", "aes256-sha256-ecp256"),
    ("AES-SHA1", "esp", "aes128-sha1"),
    ("null-sha256", "esp", "null-sha256"),
    ("aes128", "esp", "aes128"),
    ("aes128gmac", "esp", "aes128gmac"),
    ("sha256-noesn", "ah", "sha256"),
    ("sha256-sha512-x25519-esn", "ah", "sha256-sha512-x25519-esn"),
])
def test_parse_and_print(text: str, protocol: str, canonical: str) -> None:
    parsed = parse_proposals(text, protocol)  # type: ignore[arg-type]
    assert ",".join(map(str, parsed)) == canonical
    assert parse_proposals(canonical, protocol) == parsed  # type: ignore[arg-type]
    for p in parsed:
        assert Proposal.from_transforms(protocol, p.transforms()) == p


def test_fields() -> None:
    ike = parse_proposals("aes256-sha256-modp2048", "ike")[0]
    assert [a.keyword for a in ike.encryption] == ["aes256"]
    assert [a.keyword for a in ike.prf] == ["prfsha256"]
    assert ike.esn == [] and not ike.aead
    esp = parse_proposals("aes128gcm16-x25519", "esp")[0]
    assert esp.aead and esp.pfs and esp.esn == [False] and esp.integrity == []
    assert not parse_proposals("aes128gcm16", "esp")[0].pfs


def test_transform_tuples() -> None:
    p = parse_proposals("aes256-aes128ctr-3des-sha256-modp2048", "esp")
    assert p[0].transforms() == [
        (P.TRANSFORM_ENCR, 12, 256), (P.TRANSFORM_ENCR, 13, 128), (P.TRANSFORM_ENCR, 3, None),
        (P.TRANSFORM_INTEG, 12, None), (P.TRANSFORM_KE, 14, None), (P.TRANSFORM_ESN, 0, None)]
    ike = parse_proposals("aes128gcm16-prfsha256-x25519", "ike")[0]
    assert ike.transforms() == [(1, 20, 128), (2, 5, None), (4, 31, None)]
    chacha = parse_proposals("chacha20poly1305-prfsha256-x448", "ike")[0]
    assert chacha.transforms() == [(1, 28, None), (2, 5, None), (4, 32, None)]


def test_from_transforms_drops_unknown_alternatives() -> None:
    got = Proposal.from_transforms("esp", [(1, 12, 128), (1, 99, None), (3, 12, None),
                                           (3, 0, None), (5, 0, None)])
    assert str(got) == "aes128-sha256"


def test_from_transforms_refuses_when_a_type_has_nothing_known() -> None:
    with pytest.raises(UnknownAlgorithm, match="transform type 1"):
        Proposal.from_transforms("esp", [(1, 99, None), (3, 12, None)])
    with pytest.raises(UnknownAlgorithm):  # AES without its Key Length attribute
        Proposal.from_transforms("esp", [(1, 12, None), (3, 12, None)])


def test_default() -> None:
    for protocol in ("ike", "esp", "ah"):
        got = parse_proposals("default", protocol)  # type: ignore[arg-type]
        assert got and all(p.protocol == protocol for p in got)
    mixed = parse_proposals("aes128-sha256-modp2048,default", "ike")
    assert str(mixed[0]) == "aes128-sha256-prfsha256-modp2048" and len(mixed) > 1


@pytest.mark.parametrize(("text", "protocol", "message"), [
    ("aes128gcm16-sha256", "esp",
     "AEAD algorithm aes128gcm16 cannot be combined with integrity sha256 in an ESP proposal"),
    ("aes128gcm16-sha256-prfsha256-x25519", "ike", "cannot be combined with integrity sha256"),
    ("aes128gcm16-x25519", "ike", "needs a PRF"),
    ("aes128-x25519", "ike", "needs an integrity algorithm"),
    ("aes128-sha256", "ike", "needs a DH group"),
    ("sha256-x25519", "ike", "needs an encryption algorithm"),
    ("null-sha256-x25519", "ike", "does not encrypt"),
    ("aes128gmac-prfsha256-x25519", "ike", "does not encrypt"),
    ("aes128-sha256-x25519-esn", "ike", "esn/noesn belong in ESP/AH"),
    ("aes128gcm16-aes128-sha256", "esp", "two proposals"),
    ("aes128-sha256-prfsha256", "esp", "PRF prfsha256 belongs in IKE"),
    ("sha256", "esp", "needs an encryption algorithm"),
    ("null", "esp", "protects nothing"),
    ("aes128-sha256", "ah", "AH does not encrypt"),
    ("x25519", "ah", "needs an integrity algorithm"),
    ("aes128--sha256", "esp", "empty keyword"),
    ("aes128-sha256,", "esp", "empty proposal"),
])
def test_errors(text: str, protocol: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_proposals(text, protocol)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "word", "suggestion"), [
    ("aes128-sha265-modp2048", "sha265", "sha256"),
    ("aes128gcm-prfsha256-curve25591", "curve25591", "curve25519"),
    ("aes129-sha256-x25519", "aes129", "aes128"),
    ("aes128-sha256-prfsha265-x25519", "prfsha265", "prfsha256"),
    ("aes128gcm16-nosen", "nosen", "noesn"),
])
def test_unknown_keyword_suggests(text: str, word: str, suggestion: str) -> None:
    protocol = "esp" if "nosen" in text else "ike"
    with pytest.raises(UnknownAlgorithm) as info:
        parse_proposals(text, protocol)  # type: ignore[arg-type]
    assert f"'{word}'" in str(info.value) and suggestion in str(info.value)
    assert info.value.token == word


def test_unknown_protocol() -> None:
    with pytest.raises(ConfigError, match="unknown protocol"):
        parse_proposals("aes128", "gre")  # type: ignore[arg-type]


# --- Selection (RFC 7296 §2.7) --------------------------------------------------------------


def _sel(ours: str, theirs: str, protocol: str = "ike") -> str | None:
    got = select_proposal(parse_proposals(ours, protocol),  # type: ignore[arg-type]
                          parse_proposals(theirs, protocol))  # type: ignore[arg-type]
    return None if got is None else str(got)


def test_select_first_of_initiators_acceptable_proposals() -> None:
    ours = "aes256-sha256-modp2048,aes128gcm16-prfsha256-x25519"
    theirs = "aes128-sha1-modp1024,aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048"
    assert _sel(ours, theirs) == "aes128gcm16-prfsha256-x25519"


def test_select_one_algorithm_per_type_in_initiator_order() -> None:
    ours = "aes128-aes256-sha256-sha384-ecp256-modp2048-x25519"
    theirs = "aes256-aes128-sha384-sha256-x25519-ecp256"
    assert _sel(ours, theirs) == "aes256-sha384-prfsha384-x25519"


def test_select_none() -> None:
    assert _sel("aes128gcm16-prfsha256-x25519", "aes128-sha256-x25519") is None
    assert _sel("aes128-sha256-modp2048", "aes128-sha256-modp3072") is None


def test_select_esp_pfs_and_esn_must_agree() -> None:
    assert _sel("aes128gcm16-x25519", "aes128gcm16", "esp") is None
    assert _sel("aes128gcm16", "aes128gcm16-x25519", "esp") is None
    assert _sel("aes128gcm16-x25519", "aes128gcm16-ecp256-x25519", "esp") == \
        "aes128gcm16-x25519"
    assert _sel("aes128gcm16-esn-noesn", "aes128gcm16-esn", "esp") == "aes128gcm16-esn"
    assert _sel("aes128gcm16-esn", "aes128gcm16", "esp") is None


def test_selected_proposal_goes_through_the_codec_shape() -> None:
    got = select_proposal(parse_proposals("default", "ike"),
                          parse_proposals("aes256gcm16-prfsha384-ecp384", "ike"))
    assert got is not None
    assert got.transforms() == [(1, 20, 256), (2, 6, None), (4, 20, None)]
    got.validate()


KEYWORDS = {
    "encryption": ["aes128", "aes256", "3des", "aes128ctr", "chacha20poly1305",
                   "aes256gcm16", "aes128ccm12"],
    "integrity": ["sha1", "sha256", "sha512", "aesxcbc", "aescmac"],
    "prf": ["prfsha1", "prfsha256", "prfsha384", "prfaesxcbc"],
    "dh": ["modp2048", "ecp256", "x25519", "curve448", "modp2048s256"],
}


@given(st.data())
def test_round_trip_any_valid_ike_proposal(data: st.DataObject) -> None:
    lists = {k: data.draw(st.lists(st.sampled_from(v), min_size=1, max_size=3, unique=True))
             for k, v in KEYWORDS.items()}
    aead = data.draw(st.booleans())
    enc = [e for e in lists["encryption"] if ("gcm" in e or "ccm" in e or "poly" in e) == aead]
    if not enc:
        enc = ["aes128gcm16"] if aead else ["aes128"]
    words = enc + ([] if aead else lists["integrity"]) + lists["prf"] + lists["dh"]
    shuffled = data.draw(st.permutations(words))
    parsed = parse_proposals("-".join(shuffled), "ike")
    assert parse_proposals(str(parsed[0]), "ike") == parsed
    assert Proposal.from_transforms("ike", parsed[0].transforms()) == parsed[0]
    assert select_proposal(parsed, parsed) is not None
