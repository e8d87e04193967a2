"""Bad input to the ``ipseclab`` command: one line naming the file and what is wrong, no
traceback, and no file the command reads is ever overwritten."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ipseclab.cli import main

ROOT = Path(__file__).resolve().parents[1]
XFRM = ROOT / "examples" / "site-to-site.xfrm"
PLAIN = ROOT / "examples" / "plain.pcap"
SWANCTL = ROOT / "topologies" / "configs" / "site-to-site" / "gw1.swanctl.conf"
KEY = "0x0102030405060708090a0b0c0d0e0f10a1a2a3a4"


def one_line(capsys, argv: list[str], rc: int = 2) -> str:
    """Run the command; it must fail with ``rc`` and exactly one line on stderr."""
    assert main(argv) == rc
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture()
def protected(tmp_path: Path) -> tuple[Path, Path]:
    """An ESP capture of examples/plain.pcap and its esp_sa key log."""
    out, keylog = tmp_path / "esp.pcap", tmp_path / "esp_sa"
    assert main(["encap", str(XFRM), str(PLAIN), str(out), "--esp-sa", str(keylog)]) == 0
    return out, keylog


def test_a_non_utf8_xfrm_file_is_one_line_naming_the_line(tmp_path, capsys, protected) -> None:
    bad = tmp_path / "latin1.xfrm"
    bad.write_bytes(b"# gw1 \xe9t\xe9\n" + XFRM.read_bytes())
    for argv in (["encap", str(bad), str(PLAIN), str(tmp_path / "out.pcap")],
                 ["decode", str(protected[0]), "--sa-file", str(bad)],
                 ["check", str(bad)]):
        assert "latin1.xfrm:1: not UTF-8 text (byte 0xe9)" in one_line(capsys, argv)


def test_non_utf8_swanctl_conf_and_key_log_name_the_line(tmp_path, capsys, protected) -> None:
    conf = tmp_path / "gw1.swanctl.conf"
    conf.write_bytes(SWANCTL.read_bytes().replace(b"lab secret", b"lab s\xe9cret"))
    line = SWANCTL.read_text().splitlines().index(
        next(x for x in SWANCTL.read_text().splitlines() if "lab secret" in x)) + 1
    assert f"gw1.swanctl.conf:{line}: not UTF-8 text" in one_line(capsys, ["check", str(conf)])
    keylog = tmp_path / "esp_sa"
    keylog.write_bytes(b"# \xff\n" + protected[1].read_bytes())
    err = one_line(capsys, ["decode", str(protected[0]), "--esp-sa", str(keylog)])
    assert "esp_sa:1: not UTF-8 text (byte 0xff)" in err


@pytest.mark.parametrize(("old", "new", "message"), [
    ("replay-window 64 aead", "replay-window -1 aead", "window size from 0 to 4096 (at '-1')"),
    ("replay-window 64 aead", "replay-window 99999999999999999999 aead",
     "window size from 0 to 4096"),  # was a MemoryError
    ("dir out", "dir out priority -3", "priority from 0 to 4294967295 (at '-3')"),
    ("spi 0x00001001", "spi -5", "SPI from 0 to 4294967295 (at '-5')"),
    ("reqid 1 mode tunnel \\\n    replay-window 64 aead 'rfc4106(gcm(aes))' " + KEY + " 128",
     "reqid 1 mode tunnel replay-window 64 aead 'rfc4106(gcm(aes))' " + KEY + " 128"
     " encap espinudp 99999 4500 0.0.0.0", "source port from 0 to 65535 (at '99999')"),
])
def test_xfrm_numbers_out_of_range_are_refused_at_their_token(tmp_path, capsys, old, new,
                                                              message) -> None:
    text = XFRM.read_text()
    assert old in text
    bad = tmp_path / "bad.xfrm"
    bad.write_text(text.replace(old, new, 1))
    assert message in one_line(capsys, ["check", str(bad)])


def test_swanctl_replay_window_is_capped_as_linux_caps_it(tmp_path, capsys) -> None:
    conf = tmp_path / "gw1.swanctl.conf"
    conf.write_text(SWANCTL.read_text().replace(
        "mode = tunnel", "mode = tunnel\n        replay_window = 4294967295"))
    err = one_line(capsys, ["check", str(conf)])
    assert "replay_window: must be between 0 and 4096 (at '4294967295')" in err


def test_a_swanctl_conf_without_connections_names_its_file_once(tmp_path, capsys) -> None:
    conf = tmp_path / "empty.swanctl.conf"
    conf.write_text("connections {\n}\n")
    err = one_line(capsys, ["check", str(conf)])
    assert err.count("empty.swanctl.conf") == 1 and "no connections" in err


def test_encap_never_overwrites_what_it_reads(tmp_path, capsys) -> None:
    sa_file, plain = tmp_path / "gw1.xfrm", tmp_path / "plain.pcap"
    sa_file.write_bytes(XFRM.read_bytes())
    plain.write_bytes(PLAIN.read_bytes())
    out = tmp_path / "out.pcap"
    out.write_bytes(b"an earlier result")
    cases = [(["--esp-sa", str(sa_file)], "--esp-sa would overwrite the 'ip xfrm' file"),
             (["--esp-sa", str(plain)], "--esp-sa would overwrite the input capture"),
             (["--esp-sa", str(out)], "--esp-sa would overwrite the output capture")]
    for extra, message in cases:
        argv = ["encap", str(sa_file), str(plain), str(out), *extra]
        assert message in one_line(capsys, argv)
    err = one_line(capsys, ["encap", str(sa_file), str(plain), str(tmp_path / "gw1.xfrm")])
    assert "the output would overwrite the 'ip xfrm' file" in err
    assert sa_file.read_bytes() == XFRM.read_bytes()
    assert plain.read_bytes() == PLAIN.read_bytes()
    assert out.read_bytes() == b"an earlier result"


def test_encap_key_log_that_cannot_be_written_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "adir").mkdir()
    argv = ["encap", str(XFRM), str(PLAIN), str(tmp_path / "out.pcap"), "--esp-sa"]
    assert "--esp-sa is a directory" in one_line(capsys, [*argv, str(tmp_path / "adir")])
    (tmp_path / "file").write_text("x")  # a file where the key log's directory should be
    err = one_line(capsys, [*argv, str(tmp_path / "file" / "esp_sa")])
    assert "file/esp_sa: cannot write the key log" in err


def test_esp_sa_lines_ipseclab_cannot_use_name_file_and_spi(tmp_path, capsys,
                                                            protected) -> None:
    capture, keylog = protected
    lines = keylog.read_text().splitlines()
    unknown = tmp_path / "unknown"
    unknown.write_text(lines[1].replace("AES-GCM with 16 octet ICV [RFC4106]", "AES-GCM-17"))
    err = one_line(capsys, ["decode", str(capture), "--esp-sa", str(unknown)])
    assert "unknown: SPI 0x00001001: unknown encryption algorithm 'AES-GCM-17'" in err
    short = tmp_path / "short"
    short.write_text(lines[1].replace("a1a2a3a4\"", "\""))
    err = one_line(capsys, ["decode", str(capture), "--esp-sa", str(short)])
    assert "short: SPI 0x00001001: AES-GCM with 16 octet ICV [RFC4106] takes a key of 160" \
           " or 224 or 288 bits (key and salt), not 128" in err


def test_esp_sa_wildcard_address_forms_decode(tmp_path, capsys, protected) -> None:
    """Wireshark takes forms such as ``192.0.*.*``; they were a ValueError traceback."""
    capture, keylog = protected
    wild = tmp_path / "wild"
    wild.write_text(keylog.read_text().replace('"192.0.2.1","192.0.2.2"', '"192.0.*.*","*"'))
    assert main(["decode", str(capture), "--esp-sa", str(wild)]) == 0
    assert capsys.readouterr().out.endswith("3 frames: 3 ok\n")


def test_a_link_type_ipseclab_does_not_read_is_named(tmp_path, capsys, protected) -> None:
    data = protected[0].read_bytes()
    odd = tmp_path / "user0.pcap"
    odd.write_bytes(data[:20] + struct.pack("<I", 147) + data[24:])  # LINKTYPE_USER0
    assert main(["decode", str(odd)]) == 0
    out = capsys.readouterr().out
    assert "(link type 147, which ipseclab does not read)" in out and "not an IP" not in out
    assert main(["encap", str(XFRM), str(odd), str(tmp_path / "out.pcap")]) == 0
    assert "frame 1: link type 147, which ipseclab does not read" in capsys.readouterr().out


@pytest.mark.parametrize(("option", "value"), [
    ("--ike-retransmit-base", "nan"), ("--ike-retransmit-base", "inf"),
    ("--ike-retransmit-tries", "99999999999"), ("--table", "-5"), ("--mark", "-1")])
def test_gateway_numbers_out_of_range_stop_it_before_it_starts(tmp_path, capsys, option,
                                                                value) -> None:
    # The manual file does not exist: should the check fail, nothing starts all the same.
    err = one_line(capsys, ["gateway", "--manual", str(tmp_path / "missing.xfrm"),
                            "--pidfile", str(tmp_path / "pid"), option, value])
    assert option in err and "cannot read" not in err


def test_ctl_refuses_an_argument_its_command_does_not_take(capsys) -> None:
    err = one_line(capsys, ["ctl", "--socket", "/nonexistent.sock", "list-sas", "extra"], rc=1)
    assert "list-sas takes no argument (got 'extra')" in err


def test_ctrl_c_during_a_long_decode_is_one_line_and_130(tmp_path, protected) -> None:
    data = protected[0].read_bytes()
    big = tmp_path / "big.pcap"
    big.write_bytes(data[:24] + data[24:] * 100_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ipseclab", "decode", str(big), "--esp-sa",
                             str(protected[1])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline()  # decoding has begun
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err.decode() == "ipseclab: interrupted\n"


def test_encap_of_a_capture_that_breaks_off_keeps_the_earlier_output(tmp_path, capsys) -> None:
    """Nothing lost: the output is renamed into place only when complete, so an input cut
    short in its fourth frame leaves yesterday's output as it was, and no partial file."""
    out = tmp_path / "esp.pcap"
    assert main(["encap", str(XFRM), str(PLAIN), str(out)]) == 0
    before = out.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(PLAIN.read_bytes()[:-10])
    error = one_line(capsys, ["encap", str(XFRM), str(cut), str(out)])
    assert "cut short" in error
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pcap", "esp.pcap"]


@pytest.mark.parametrize("argv", [
    ["mallory", "sniff", "eth0", "notanumber", "1", "1"],
    ["mallory", "sniff"],
    ["services", "listen", "port", "1"],
    ["services", "send", "10.0.0.1", "5"],
    ["rogue_responder", "192.0.2.9", "@id", "soon"],
])
def test_the_lab_tools_say_what_is_wrong_with_their_arguments(argv: list[str]) -> None:
    """The attack library's node tools (run by the lab inside its namespaces) end a bad
    argument list with one error line and their usage, exit 2, no traceback."""
    proc = subprocess.run([sys.executable, "-m", f"ipseclab.attacks.{argv[0]}", *argv[1:]],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("error: "), proc.stderr
    assert f"arguments: {' '.join(argv[1:])}" in proc.stderr
