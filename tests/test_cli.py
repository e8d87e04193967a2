"""The ipseclab command: help, one-line errors, doctor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipseclab.cli import main


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("run", "encap", "decode", "gateway", "ctl", "clean", "doctor", "lab", "check"):
        assert name in out


def test_unknown_scenario_is_one_line(capsys) -> None:
    rc = main(["run", "no-such-scenario"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    if os.geteuid() == 0:
        assert "site-to-site" in err  # the known ones are listed
    else:
        assert "root" in err


def test_doctor_reports_every_tool(capsys) -> None:
    main(["doctor"])
    out = capsys.readouterr().out
    for tool in ("tshark", "iperf3", "mininet", "tun", "esp compiled fast path"):
        assert tool in out.lower()


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "ipseclab", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("ipseclab ")


ROOT = Path(__file__).resolve().parents[1]


def test_check_shows_an_xfrm_file_and_a_swanctl_conf(capsys) -> None:
    rc = main(["check", str(ROOT / "examples" / "site-to-site.xfrm"),
               str(ROOT / "topologies" / "configs" / "nat-road-warrior" / "gw.xfrm"),
               str(ROOT / "topologies" / "configs" / "site-to-site" / "gw1.swanctl.conf")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "'ip xfrm' file: 2 SAs, 3 policies" in out
    assert "SA esp spi 0x00001001 192.0.2.1 -> 192.0.2.2, tunnel, aes128gcm16, reqid 1," \
           " replay-window 64" in out
    assert "espinudp 4500 4500" in out
    assert "policy 10.1.0.0/24 === 10.2.0.0/24 dir out protect priority 0, tmpl esp tunnel" \
           " 192.0.2.1 -> 192.0.2.2 reqid 1" in out
    assert "swanctl.conf: 1 connection\n" in out
    assert "proposals: aes128gcm16-prfsha256-x25519" in out and "esp proposals: aes128gcm16" in out
    assert "0x0102030405" not in out and "lab secret" not in out  # no keys, no PSK


def test_check_reports_each_bad_file_in_one_line(tmp_path, capsys) -> None:
    conf = (ROOT / "topologies" / "configs" / "site-to-site" / "gw1.swanctl.conf").read_text()
    bad = tmp_path / "bad.swanctl.conf"
    bad.write_text(conf.replace("remote_addrs = 192.0.2.2", "remote_addrs = 192.0.2.256"))
    named = tmp_path / "named.swanctl.conf"
    named.write_text(conf.replace("remote_addrs = 192.0.2.2", "remote_addrs = gw2.example"))
    xfrm = tmp_path / "bad.xfrm"
    xfrm.write_text("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001"
                    " mode tunnel aead 'rfc4106(gcm(aes))' 0x01 128\n")
    rc = main(["check", str(bad), str(named), str(xfrm), str(tmp_path / "missing.conf")])
    captured = capsys.readouterr()
    assert rc == 2
    errors = captured.err.splitlines()
    assert len(errors) == 3 and "Traceback" not in captured.err
    assert "bad.swanctl.conf:8" in errors[0] and "192.0.2.256" in errors[0]
    assert "bad.xfrm:1" in errors[1]
    assert "missing.conf: cannot read" in errors[2]
    assert "warning:" in captured.out and "'gw2.example' is taken as a host name" in captured.out


def test_ctl_texts_for_reauthentication() -> None:
    """``ctl reauth`` and ``list-conns`` as an operator reads them (the gateway side is in
    tests/test_ike_gateway.py)."""
    from ipseclab.drivers.cli_gateway import format_action, format_conns

    assert format_action("reauth", {"reauthenticating": ["s2s"]}) == "reauthenticating s2s"
    assert format_action("rekey", {"rekeyed": []}) == "nothing to rekey"
    conn = {"name": "s2s", "rekey_time": 0.0, "reauth_time": 3600.0, "dpd_delay": 0,
            "local_addrs": ["192.0.2.1"], "remote_addrs": ["192.0.2.2"], "proposals": "default",
            "local_auth": "psk", "local_id": "", "remote_auth": "psk", "remote_id": "%any",
            "children": []}
    assert format_conns([conn]).splitlines()[0] == (
        "s2s: IKEv2, reauthentication every 3600s, no rekeying")
    conn["children"] = [{"name": "net", "mode": "tunnel", "rekey_time": 3600.0,
                         "rekey_bytes": 1 << 20, "rekey_packets": 0, "tfc_padding": "mtu",
                         "start_action": "trap", "dpd_action": "clear", "close_action": "none",
                         "trapped": False, "local_ts": ["10.1.0.0/24"],
                         "remote_ts": ["10.2.0.0/24"], "esp_proposals": "aes128gcm16"}]
    assert format_conns([conn]).splitlines()[8] == (
        "  net: TUNNEL, rekeying every 3600s or 1048576 bytes, TFC padding to mtu,"
        " start trap, dpd clear, close none")


def test_ctl_reauth_needs_a_name(capsys) -> None:
    assert main(["ctl", "--socket", "/nonexistent.sock", "reauth"]) == 1
    assert "reauth needs a name: ipseclab ctl reauth IKE|CONN" in capsys.readouterr().err
