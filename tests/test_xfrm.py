"""Manual SAs and policies in 'ip xfrm' syntax: what Linux scripts contain loads unchanged."""

from __future__ import annotations

import pytest

from ipseclab.config import xfrm
from ipseclab.errors import ConfigError
from ipseclab.ipsec.spd import PolicyAction

KEY16 = "0x" + "11" * 16
KEY20 = "0x" + "22" * 20
KEY32 = "0x" + "33" * 32


def _one(line: str, insecure: bool = False):
    text = ("# ipseclab: insecure\n" if insecure else "") + line
    return xfrm.parse(text, "t.xfrm").states[0]


@pytest.mark.parametrize(("alg", "key", "icv", "keyword"), [
    ("rfc4106(gcm(aes))", KEY20, 128, "aes128gcm16"),
    ("rfc4106(gcm(aes))", KEY20, 64, "aes128gcm8"),
    ("rfc4106(gcm(aes))", "0x" + "44" * 36, 96, "aes256gcm12"),
    ("rfc4309(ccm(aes))", "0x" + "55" * 19, 128, "aes128ccm16"),
    ("rfc7539esp(chacha20,poly1305)", "0x" + "66" * 36, 128, "chacha20poly1305"),
    ("rfc4543(gcm(aes))", KEY20, 128, "aes128gmac"),
])
def test_aead_states(alg: str, key: str, icv: int, keyword: str) -> None:
    sa = _one(f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 "
              f"mode tunnel aead '{alg}' {key} {icv}")
    assert sa.encryption.keyword == keyword
    assert sa.encryption_key == bytes.fromhex(key[2:])
    assert sa.integrity is None


def test_cbc_with_auth_trunc_and_every_option() -> None:
    sa = _one("ip -4 xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 4097 reqid 7 "
              f"mode transport replay-window 128 flag esn enc 'cbc(aes)' {KEY32} "
              f"auth-trunc 'hmac(sha256)' {KEY32} 128 encap espinudp 4500 4501 0.0.0.0 "
              "limit byte-soft 1000 limit byte-hard 2000 sel src 10.1.0.0/24 dst 10.2.0.0/24")
    assert (sa.spi, sa.reqid, sa.replay_window, sa.esn) == (4097, 7, 128, True)
    assert sa.encryption.keyword == "aes256" and sa.integrity.keyword == "sha256"
    assert (sa.encap.sport, sa.encap.dport) == (4500, 4501)
    assert sa.lifetime.hard_bytes == 2000
    assert str(sa.selector).startswith("10.2.0.0/24")  # an SA's selector is read inbound


def test_plain_auth_truncates_sha256_to_96_bits_like_linux() -> None:
    sa = _one(f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc aes "
              f"{KEY16} auth sha256 {KEY32}")
    assert sa.integrity.icv_size == 12


def test_ah_and_null_encryption() -> None:
    ah = _one(f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x200 "
              f"auth-trunc 'hmac(sha1)' 0x{'77' * 20} 96")
    assert ah.protocol == "ah" and ah.integrity.keyword == "sha1"
    null = _one(f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x300 "
                f"enc 'ecb(cipher_null)' '' auth 'hmac(sha1)' 0x{'77' * 20}")
    assert null.encryption.keyword == "null"


def test_example_file_and_policies() -> None:
    config = xfrm.load("examples/site-to-site.xfrm")
    assert len(config.states) == 2 and len(config.policies) == 3
    out, inb, _fwd = config.policies
    assert out.action is PolicyAction.PROTECT and out.direction == "out"
    assert str(out.selector.local).startswith("10.1.0.0/24")
    assert str(inb.selector.local).startswith("10.1.0.0/24")  # dir in: dst is the local side
    assert out.templates[0].reqid == 1 and str(out.templates[0].dst) == "192.0.2.2"


def test_bypass_and_block_policies() -> None:
    config = xfrm.parse("ip xfrm policy add src 0.0.0.0/0 dst 0.0.0.0/0 proto udp dport 500 "
                        "dir out priority 10\n"
                        "ip xfrm policy add src 10.9.0.0/16 dst 0.0.0.0/0 dir out action block\n")
    assert [p.action for p in config.policies] == [PolicyAction.BYPASS, PolicyAction.DISCARD]


def test_continuations_comments_and_flush() -> None:
    config = xfrm.parse("ip xfrm state flush\n# a comment\n"
                        "ip xfrm state add src 192.0.2.1 dst 192.0.2.2 \\\n"
                        f"   proto esp spi 0x100 aead 'rfc4106(gcm(aes))' {KEY20} 128 # key\n")
    assert len(config.states) == 1


@pytest.mark.parametrize(("line", "token", "words"), [
    ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc 'cbc(aez)' "
     + KEY16, "cbc(aez)", "unknown encryption"),
    ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc 'cbc(aes)' 0x1122",
     None, "needs a key of"),
    ("ip xfrm state add src 192.0.2.1 dst 192.0.2.300 proto esp spi 0x100", "192.0.2.300",
     "IP address"),
    ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc 'cbc(aes)' " + KEY16,
     None, "insecure"),
    ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 colour blue",
     "colour", "unknown state keyword"),
    ("ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir sideways", "sideways", "direction"),
    ("ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir out tmpl proto esp mode tunnel",
     None, "tunnel endpoints"),
    ("ip route add 10.0.0.0/8 dev eth0", "route", None),
    ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 aead "
     f"'rfc4106(gcm(aes))' {KEY20} 100", "100", "ICV"),
])
def test_errors_name_file_line_and_token(line: str, token: str | None, words: str | None) -> None:
    with pytest.raises(ConfigError) as err:
        xfrm.parse("# first line\n" + line, "bad.xfrm")
    assert err.value.file == "bad.xfrm" and err.value.line == 2
    if token is not None:
        assert err.value.token == token
    if words is not None:
        assert words in str(err.value)


def test_insecure_directive_allows_encryption_without_integrity() -> None:
    sa = _one(f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc aes {KEY16}",
              insecure=True)
    assert sa.integrity is None and sa.insecure


def test_missing_file_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        xfrm.load(tmp_path / "nope.xfrm")
