"""Wireshark key-log files: exact lines, round trips, bad input, and tshark 4.0 reading them."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP
from scapy.utils import wrpcap

from ipseclab import keylog as kl
from ipseclab.errors import ConfigError
from ipseclab.keylog import (
    EspSaEntry,
    EspSaFile,
    IkeSaEntry,
    IkeSaFile,
    format_esp_sa,
    format_ikev2,
    keylog_dir_layout,
    parse_esp_sa,
    parse_ikev2,
    read_esp_sa,
    read_ikev2,
    tshark_40_knows,
    uat_quote,
)

TSHARK = shutil.which("tshark")

CBC = EspSaEntry(
    "IPv4",
    "192.0.2.1",
    "198.51.100.1",
    0xC0DE,
    kl.ESP_ENCR_AES_CBC,
    bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
    kl.ESP_AUTH_HMAC_SHA256_128,
    bytes(range(32)),
)
GCM = EspSaEntry(
    "IPv6",
    "2001:db8::1",
    "*",
    0xFFFFFFFF,
    kl.ESP_ENCR_AES_GCM_16,
    bytes(16) + b"\xca\xfe\xba\xbe",  # key, then the 4-byte salt
    kl.ESP_AUTH_NULL,
    b"",
)
IKE = IkeSaEntry(
    bytes.fromhex("0011223344556677"),
    bytes.fromhex("8899aabbccddeeff"),
    bytes([1]) * 16,
    bytes([2]) * 16,
    kl.IKEV2_ENCR_AES_CBC[128],
    bytes([3]) * 32,
    bytes([4]) * 32,
    kl.IKEV2_INTEG_HMAC_SHA2_256_128,
)


def test_exact_esp_sa_lines() -> None:
    assert format_esp_sa(CBC) == (
        '"IPv4","192.0.2.1","198.51.100.1","0x0000c0de","AES-CBC [RFC3602]",'
        '"0x000102030405060708090a0b0c0d0e0f","HMAC-SHA-256-128 [RFC4868]",'
        '"0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"'
    )
    assert format_esp_sa(GCM) == (
        '"IPv6","2001:db8::1","*","0xffffffff","AES-GCM with 16 octet ICV [RFC4106]",'
        '"0x00000000000000000000000000000000cafebabe","NULL",""'
    )
    wildcard = EspSaEntry("IPv4", "*", "*", None, "NULL", b"", "NULL", b"")
    assert format_esp_sa(wildcard) == '"IPv4","*","*","*","NULL","","NULL",""'


def test_exact_ikev2_line() -> None:
    assert format_ikev2(IKE) == (
        "0011223344556677,8899aabbccddeeff,"
        + "01" * 16
        + ","
        + "02" * 16
        + ',"AES-CBC-128 [RFC3602]",'
        + "03" * 32
        + ","
        + "04" * 32
        + ',"HMAC_SHA2_256_128 [RFC4868]"'
    )
    aead = IkeSaEntry(
        bytes(8),
        bytes(8),
        b"\x05" * 36,
        b"\x06" * 36,
        kl.IKEV2_ENCR_AES_GCM[256, 16],
        b"",
        b"",
        kl.IKEV2_INTEG_NONE,
    )
    assert format_ikev2(aead).endswith(
        ',"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"'
    )


def test_repr_hides_keys() -> None:
    for entry in (CBC, GCM, IKE):
        text = repr(entry)
        assert "0102" not in text and "\\x01" not in text and "key" not in text.lower()
        assert "sk_" not in text
    assert "0xc0de" in format_esp_sa(CBC) or "0000c0de" in format_esp_sa(CBC)


def test_uat_quoting_rules() -> None:
    assert uat_quote('a"b\\c') == '"a\\x22b\\x5cc"'
    assert uat_quote("tab\there\n") == '"tab\\x09here\\x0a"'
    assert uat_quote("é") == '"\\xc3\\xa9"'
    # Wireshark's reader also knows C escapes and octal; and "\q" means "q".
    line = '"IPv4","*","*","*","A\\tB\\101\\q\\x41","","NULL",""'
    assert parse_esp_sa(line)[0].encryption == "A\tBAqA"


names = st.one_of(
    st.sampled_from(sorted(kl.TSHARK_40_ESP_ENCRYPTIONS | kl.TSHARK_40_ESP_AUTHENTICATIONS)),
    st.text(min_size=1, max_size=40),
)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
esp_entries = st.one_of(
    st.tuples(st.just("IPv4"), st.one_of(v4, st.just("*")), st.one_of(v4, st.just("*"))),
    st.tuples(st.just("IPv6"), st.one_of(v6, st.just("*")), st.one_of(v6, st.just("*"))),
).flatmap(
    lambda fam: st.builds(
        EspSaEntry,
        st.just(fam[0]),
        st.just(fam[1]),
        st.just(fam[2]),
        st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        names,
        st.binary(max_size=40),
        names,
        st.binary(max_size=64),
    )
)
ike_entries = st.builds(
    IkeSaEntry,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.one_of(st.sampled_from(sorted(kl.TSHARK_40_IKEV2_ENCRYPTIONS)), st.text(min_size=1)),
    st.binary(max_size=64),
    st.binary(max_size=64),
    st.one_of(st.sampled_from(sorted(kl.TSHARK_40_IKEV2_INTEGRITIES)), st.text(min_size=1)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(esp_entries, max_size=5))
def test_esp_sa_round_trip(entries: list[EspSaEntry]) -> None:
    text = "# comment\n\n" + "".join(format_esp_sa(e) + "\n" for e in entries)
    assert parse_esp_sa(text) == entries
    for e in entries:
        line = format_esp_sa(e)
        assert "\n" not in line and line.isascii() and line.count('"') == 16


@settings(max_examples=200, deadline=None)
@given(st.lists(ike_entries, max_size=5))
def test_ikev2_round_trip(entries: list[IkeSaEntry]) -> None:
    text = "".join(format_ikev2(e) + "\r\n" for e in entries)
    assert parse_ikev2(text) == entries


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parsers_raise_only_config_error(text: str) -> None:
    for parse in (parse_esp_sa, parse_ikev2):
        try:
            parse(text, "fuzz")
        except ConfigError as e:
            assert e.file == "fuzz" and e.line is not None


GOOD_ESP = format_esp_sa(CBC)
BAD_ESP = {
    "8 fields": GOOD_ESP.rsplit(",", 1)[0],
    "not a number": GOOD_ESP.replace('"0x0000c0de"', '"0xc0dz"'),
    "32 bits": GOOD_ESP.replace('"0x0000c0de"', '"0x100000000"'),
    "hexadecimal": GOOD_ESP.replace('"0x0001', '"0x0g01'),
    "IPv4 or IPv6": GOOD_ESP.replace('"IPv4"', '"IPX"'),
    "not an IPv4 address": GOOD_ESP.replace('"192.0.2.1"', '"2001:db8::1"'),
    "unterminated": GOOD_ESP[:-1],
    "comma": GOOD_ESP.replace('","', '" "', 1),
    "stray quote": GOOD_ESP + ',ab"c',
    "empty": GOOD_ESP.replace('"192.0.2.1"', '""'),
}


@pytest.mark.parametrize("what", sorted(BAD_ESP))
def test_bad_esp_sa_lines(what: str) -> None:
    text = "# header\n" + GOOD_ESP + "\n" + BAD_ESP[what] + "\n"
    with pytest.raises(ConfigError, match=re.escape(what)) as err:
        parse_esp_sa(text, file="keys/esp_sa")
    assert err.value.file == "keys/esp_sa" and err.value.line == 3
    assert str(err.value).startswith("keys/esp_sa:3: ")


GOOD_IKE = format_ikev2(IKE)
BAD_IKE = {
    "8 fields": GOOD_IKE + ",",
    "ISPI must be 16 hex digits": "00" + GOOD_IKE,
    "RSPI must be 16 hex digits": GOOD_IKE.replace("8899aabbccddeeff", "8899aabbccddee"),
    "SK_ai is not hexadecimal": GOOD_IKE.replace("0303", "0x03", 1),
    "algorithm name": GOOD_IKE.replace('"AES-CBC-128 [RFC3602]"', '""'),
}


@pytest.mark.parametrize("what", sorted(BAD_IKE))
def test_bad_ikev2_lines(what: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(what)) as err:
        parse_ikev2("\n" + BAD_IKE[what], file="ikev2_decryption_table")
    assert err.value.file == "ikev2_decryption_table" and err.value.line == 2


def test_ikev2_accepts_quoted_hex_and_spaces() -> None:
    line = '"0011223344556677" , 8899AABBCCDDEEFF,,,"NULL [RFC2410]",,,"NONE [RFC4306]"'
    (e,) = parse_ikev2(line)
    assert e.spi_r == bytes.fromhex("8899aabbccddeeff") and e.sk_ei == b""


def test_esp_ascii_key_without_0x() -> None:
    line = '"IPv4","*","*","0x1","AES-CBC [RFC3602]","sixteen byte key","NULL",""'
    assert parse_esp_sa(line)[0].encryption_key == b"sixteen byte key"
    assert parse_esp_sa(line.replace('"0x1"', '"17"'))[0].spi == 17


def test_dir_layout_and_files(tmp_path: Path) -> None:
    esp_path, ike_path = keylog_dir_layout(tmp_path)
    assert esp_path == tmp_path / "wireshark" / "esp_sa"
    assert ike_path == tmp_path / "wireshark" / "ikev2_decryption_table"

    esp = EspSaFile(esp_path)
    assert esp.entries() == []
    esp.add(CBC)
    esp.add(GCM)
    other = EspSaFile(esp_path)  # e.g. a second gateway logging into the same directory
    assert other.entries() == [CBC, GCM]
    rekeyed = dataclasses.replace(CBC, encryption_key=b"\xff" * 16, authentication_key=b"\xee" * 32)
    other.add(rekeyed)
    assert esp.entries() == [GCM, rekeyed]
    assert read_esp_sa(esp_path) == [GCM, rekeyed]
    esp.remove(0xFFFFFFFF, dst="198.51.100.1")  # wrong destination: nothing removed
    assert len(esp.entries()) == 2
    esp.remove(0xFFFFFFFF)
    assert esp.entries() == [rekeyed]
    assert stat.S_IMODE(os.stat(esp_path).st_mode) == 0o600
    text = esp_path.read_text()
    assert text.startswith("#") and text.endswith(format_esp_sa(rekeyed) + "\n")

    ike = IkeSaFile(ike_path)
    ike.add(IKE)
    second = IkeSaEntry(
        b"\x01" * 8, bytes(8), b"", b"", kl.IKEV2_ENCR_NULL, b"", b"", "NONE [RFC4306]"
    )
    ike.add(second)
    assert read_ikev2(ike_path) == [IKE, second]
    ike.remove(IKE.spi_i, IKE.spi_r)
    assert ike.entries() == [second]
    # only the two tables and their lock files: no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "wireshark").iterdir()) == [
        "esp_sa",
        "esp_sa.lock",
        "ikev2_decryption_table",
        "ikev2_decryption_table.lock",
    ]


def test_read_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as err:
        read_esp_sa(tmp_path / "nope")
    assert err.value.file == str(tmp_path / "nope")


def test_tshark_40_knows() -> None:
    assert tshark_40_knows(CBC) and tshark_40_knows(GCM) and tshark_40_knows(IKE)
    ccm = EspSaEntry("IPv4", "*", "*", 1, kl.ESP_ENCR_AES_CCM_16, b"k" * 19, "NULL", b"")
    assert not tshark_40_knows(ccm)


# ------------------------------------------------------------------ tshark 4.0 reads them


def _ike_key_lengths(encryption: str, integrity: str) -> tuple[int, int]:
    m = re.match(r"AES-(CBC|CTR|GCM|CCM)-(\d+)", encryption)
    if m:
        extra = {"CBC": 0, "CTR": 4, "GCM": 4, "CCM": 3}[m.group(1)]
        enc = int(m.group(2)) // 8 + extra
    else:
        enc = {kl.IKEV2_ENCR_3DES: 24, kl.IKEV2_ENCR_NULL: 0}[encryption]
    integ = {
        kl.IKEV2_INTEG_HMAC_MD5_96: 16,
        kl.IKEV2_INTEG_HMAC_SHA1_96: 20,
        kl.IKEV2_INTEG_HMAC_MD5_128: 16,
        kl.IKEV2_INTEG_HMAC_SHA1_160: 20,
        kl.IKEV2_INTEG_HMAC_SHA2_256_96: 32,
        kl.IKEV2_INTEG_HMAC_SHA2_256_128: 32,
        kl.IKEV2_INTEG_HMAC_SHA2_384_192: 48,
        kl.IKEV2_INTEG_HMAC_SHA2_512_256: 64,
    }.get(integrity, 0)
    return enc, integ


def _run_tshark(confdir: Path, pcap: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_CONFIG_HOME=str(confdir))
    return subprocess.run(
        [TSHARK, "-o", "esp.enable_encryption_decode:TRUE", "-r", str(pcap), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.interop
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_tshark_accepts_our_tables(tmp_path: Path) -> None:
    pcap = tmp_path / "esp.pcap"
    wrpcap(
        str(pcap),
        [IP(src="192.0.2.1", dst="198.51.100.1") / ESP(spi=0xC0DE, seq=1, data=b"x" * 48)],
    )
    esp_path, ike_path = keylog_dir_layout(tmp_path)
    esp = EspSaFile(esp_path)
    esp.add(CBC)  # the entry that matches the packet
    for i, encr in enumerate(sorted(kl.TSHARK_40_ESP_ENCRYPTIONS)):
        auth = sorted(kl.TSHARK_40_ESP_AUTHENTICATIONS)[i % len(kl.TSHARK_40_ESP_AUTHENTICATIONS)]
        esp.add(EspSaEntry("IPv6", "2001:db8::1", "*", 0x100 + i, encr, bytes(20), auth, bytes(20)))
    ike = IkeSaFile(ike_path)
    integs = sorted(kl.TSHARK_40_IKEV2_INTEGRITIES - {kl.IKEV2_INTEG_NONE})
    for i, encr in enumerate(sorted(kl.TSHARK_40_IKEV2_ENCRYPTIONS)):
        integ = kl.IKEV2_INTEG_NONE if "ICV" in encr else integs[i % len(integs)]
        ek, ak = _ike_key_lengths(encr, integ)
        ike.add(
            IkeSaEntry(
                i.to_bytes(8, "big"),
                b"\x99" * 8,
                b"\x01" * ek,
                b"\x02" * ek,
                encr,
                b"\x03" * ak,
                b"\x04" * ak,
                integ,
            )
        )
    result = _run_tshark(tmp_path, pcap, "-V")
    assert result.returncode == 0, result.stderr
    assert "Error loading table" not in result.stderr, result.stderr
    assert "uat" not in result.stderr.lower() and "esp_sa" not in result.stderr
    # the packet matched our SA: tshark names its algorithms next to the ESP fields
    assert "<AES-CBC [RFC3602]>" in result.stdout
    assert "<HMAC-SHA-256-128 [RFC4868]>" in result.stdout

    # The check can fail: a name tshark 4.0 does not know is reported.
    esp.add(EspSaEntry("IPv4", "*", "*", 7, kl.ESP_ENCR_AES_CCM_16, bytes(19), "NULL", b""))
    ike.add(
        IkeSaEntry(b"\x07" * 8, bytes(8), b"", b"", "AES-XTS [nowhere]", b"", b"", "NONE [RFC4306]")
    )
    result = _run_tshark(tmp_path, pcap)
    assert "ESP SAs" in result.stderr and "AES-CCM with 16 octet ICV" in result.stderr
    esp.remove(7)
    result = _run_tshark(tmp_path, pcap)
    assert "ESP SAs" not in result.stderr and "IKEv2 Decryption Table" in result.stderr
