"""The ipseclab command: help, one-line errors, doctor."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ipseclab.cli import main


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("run", "encap", "decode", "gateway", "ctl", "clean", "doctor", "lab"):
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
    for tool in ("tshark", "iperf3", "mininet", "tun"):
        assert tool in out.lower()


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "ipseclab", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("ipseclab ")
