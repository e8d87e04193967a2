"""The README's encap/decode example runs as written, on the capture the repository ships."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from scapy.utils import wrpcap

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block(heading: str, lang: str) -> str:
    section = README[README.index(heading):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _commands() -> list[str]:
    """The shell lines of the example, continuation lines joined."""
    text = _block("## Protect a capture, decode it again", "sh").replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.strip()]


def _run(command: str, out: Path) -> str:
    command = command.replace("out/example", str(out))
    command = command.replace(".venv/bin/ipseclab", f"{sys.executable} -m ipseclab")
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_shipped_capture_is_what_its_script_makes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_plain", ROOT / "examples" /
                                                  "make_plain_pcap.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    wrpcap(str(tmp_path / "plain.pcap"), module.frames())
    assert (tmp_path / "plain.pcap").read_bytes() == (ROOT / "examples" / "plain.pcap").read_bytes()


def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    out = tmp_path / "example"
    commands = _commands()
    assert len(commands) >= 4
    encap, decode, decode_json = commands[:3]
    report = _run(encap, out)
    assert "4 frames: 1 bypass, 2 protect, 1 not IP (dropped)" in report
    assert (out / "wireshark" / "esp_sa").exists()
    lines = _run(decode, out).splitlines()
    assert lines[-1] == "3 frames: 3 ok"
    assert "echo request" in lines[0] and "UDP 10.1.0.10:40000 > 10.2.0.10:5000" in lines[2]
    assert _run(decode_json, out).count('"proto": "esp", "status": "ok"') == 2
    tshark = [c for c in commands if c.startswith("XDG_CONFIG_HOME")]
    if shutil.which("tshark") is not None:
        shown = _run(tshark[0], out)
        assert "Echo (ping) request" in shown and "40000 → 5000" in shown
    python = _block("From Python:", "python").replace("out/example", str(out))
    shown = subprocess.run([sys.executable, "-c", python], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "1 esp ok 4097 1" in shown and "ipseclab example: ping" in shown


def test_encap_never_writes_over_its_input(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pcap"
    shutil.copy(ROOT / "examples" / "plain.pcap", plain)
    result = subprocess.run([sys.executable, "-m", "ipseclab", "encap",
                             str(ROOT / "examples" / "site-to-site.xfrm"), str(plain), str(plain)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "overwrite the input" in result.stderr
    assert "Traceback" not in result.stderr
    assert plain.read_bytes() == (ROOT / "examples" / "plain.pcap").read_bytes()


def test_encap_of_a_missing_capture_leaves_no_output(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ipseclab", "encap",
                             str(ROOT / "examples" / "site-to-site.xfrm"),
                             str(tmp_path / "no-such.pcap"),
                             str(tmp_path / "new" / "esp.pcap")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "cannot open" in result.stderr
    assert not (tmp_path / "new").exists()
