"""Bad input gives a verdict or a located ConfigError, never a traceback (review fuzzing)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.capture.decode import KeyRing, decode_packet
from ipseclab.config import xfrm
from ipseclab.config.xfrm import ManualConfig
from ipseclab.crypto.transforms import encryption, integrity
from ipseclab.errors import ConfigError
from ipseclab.ipsec import ah, esp, ip
from ipseclab.ipsec.sa import SecurityAssociation, UdpEncap

_WORDS = [
    "ip", "-4", "-6", "xfrm", "state", "policy", "add", "update", "flush", "src", "dst",
    "proto", "esp", "ah", "spi", "0x1000", "0x1", "4096", "-1", "0xffffffffff", "mode",
    "tunnel", "transport", "beet", "enc", "aead", "auth", "auth-trunc", "comp", "cbc(aes)",
    "rfc4106(gcm(aes))", "rfc4309(ccm(aes))", "rfc7539esp(chacha20,poly1305)", "hmac(sha256)",
    "hmac(sha1)", "xcbc(aes)", "ecb(cipher_null)", "aes", "sha256", "0x" + "11" * 16,
    "0x" + "22" * 20, "0x" + "33" * 32, "0x" + "44" * 36, "0xzz", "0x", '""', "128", "96", "64",
    "0", "reqid", "1", "replay-window", "32", "flag", "esn", "noecn", "encap", "espinudp",
    "espinudp-nonike", "4500", "0.0.0.0", "limit", "time-soft", "time-hard", "byte-soft",
    "packet-hard", "sel", "dir", "out", "in", "fwd", "tmpl", "level", "required", "use",
    "action", "allow", "block", "priority", "192.0.2.1", "192.0.2.2", "2001:db8::1",
    "10.0.0.0/24", "10.0.0.0/33", "::/0", "sport", "dport", "80", "65536", "tcp", "udp",
    "icmp", "type", "code", "if_id", "mark", "tfcpad", "\\", "#", "'", "\"", "\t", "é",
    "# ipseclab: insecure",
]
_lines = st.lists(st.sampled_from(_WORDS), max_size=24).map(" ".join)
_texts = st.lists(st.one_of(_lines, st.text(max_size=30)), max_size=6).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_xfrm_parse_gives_config_or_located_error(text: str) -> None:
    try:
        config = xfrm.parse(text, file="fuzz.conf")
    except ConfigError as exc:
        assert exc.file == "fuzz.conf"
        assert exc.line is not None and 1 <= exc.line <= text.count("\n") + 1
        assert "\n" not in exc.message
    else:
        assert isinstance(config, ManualConfig)


def _sas() -> list[SecurityAssociation]:
    gcm = encryption("aes128gcm16")
    return [
        SecurityAssociation(spi=0x1001, src="192.0.2.1", dst="192.0.2.2", mode="tunnel",
                            encryption=gcm, encryption_key=bytes(range(20))),
        SecurityAssociation(spi=0x1002, src="2001:db8::1", dst="2001:db8::2",
                            mode="transport", encryption=encryption("aes128"),
                            encryption_key=bytes(16), integrity=integrity("sha256"),
                            integrity_key=bytes(32), esn=True),
        SecurityAssociation(spi=0x1003, src="192.0.2.1", dst="192.0.2.2", mode="transport",
                            encryption=gcm, encryption_key=bytes(20), encap=UdpEncap()),
        SecurityAssociation(spi=0x1004, src="192.0.2.1", dst="192.0.2.2", protocol="ah",
                            mode="transport", integrity=integrity("sha256"),
                            integrity_key=bytes(32)),
        SecurityAssociation(spi=0x1005, src="2001:db8::1", dst="2001:db8::2", protocol="ah",
                            mode="tunnel", integrity=integrity("sha1"), integrity_key=bytes(20)),
    ]


def _valid_frames() -> list[bytes]:
    tx = _sas()
    v4 = ip.ipv4_header(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), 17, 12) \
        + b"\x00\x35\x00\x35\x00\x0c\x00\x00abcd"
    v6 = ip.ipv6_header(IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"), 17, 12) \
        + b"\x00\x35\x00\x35\x00\x0c\x00\x00abcd"
    return [esp.encapsulate(tx[0], v4), esp.encapsulate(tx[1], v6), esp.encapsulate(tx[2], v4),
            ah.encapsulate(tx[3], v4), ah.encapsulate(tx[4], v6)]


_FRAMES = _valid_frames()


def _header(version: int, proto: int, payload: bytes) -> bytes:
    if version == 4:
        return ip.ipv4_header(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), proto,
                              len(payload)) + payload
    return ip.ipv6_header(IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"), proto,
                          len(payload)) + payload


_udp = st.builds(lambda sp, dp, body: sp.to_bytes(2, "big") + dp.to_bytes(2, "big")
                 + (8 + len(body)).to_bytes(2, "big") + b"\x00\x00" + body,
                 st.sampled_from([500, 4500, 53]), st.sampled_from([500, 4500, 53]),
                 st.binary(max_size=120))
_structured = st.builds(_header, st.sampled_from([4, 6]),
                        st.sampled_from([50, 51, 17, 0, 43, 44, 60, 4, 41]),
                        st.one_of(st.binary(max_size=160), _udp))
_mutated = st.builds(lambda f, i, x, cut: (f[: i % len(f)] + bytes([f[i % len(f)] ^ x])
                                           + f[i % len(f) + 1 :])[: cut or None],
                     st.sampled_from(_FRAMES), st.integers(0, 400), st.integers(1, 255),
                     st.integers(0, 200))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=200), _structured, _mutated,
                          st.sampled_from(_FRAMES)), max_size=5))
def test_decode_packet_never_raises(frames: list[bytes]) -> None:
    ring = KeyRing(sas=_sas())
    for number, frame in enumerate(frames):
        decoded = decode_packet(number, 0.0, frame, ring)
        assert decoded.status


def test_decode_packet_reads_the_valid_frames() -> None:
    ring = KeyRing(sas=_sas())
    statuses = [decode_packet(n, 0.0, f, ring).status for n, f in enumerate(_FRAMES)]
    assert statuses == ["ok"] * len(_FRAMES)


def test_xfrm_line_numbers_count_newlines_only() -> None:
    """A stray CR or form feed must not shift the line an error names (editors count LF)."""
    try:
        xfrm.parse("\x0c\rip xfrm bogus\r\n", file="f.conf")
    except ConfigError as exc:
        assert exc.line == 1
    else:
        raise AssertionError("a bad line was accepted")
