"""docs/testing-a-gateway.md runs as written: every ```sh command of the guide, in order.

The session commands run in a namespace pair of the test's own (``ipldoc-*``, from
``peer_namespaces``): ipseclab's side is the guide's 192.0.2.1 with 10.1.0.1 on ``lo``, and
the gateway under test is strongSwan's charon at 192.0.2.2 (LAN 10.2.0.1) with the mirror of
the guide's swanctl.conf. Only paths, the gateway's name, the interface (``eth1`` is the
veth ``wan0``) and ``.venv/bin/ipseclab`` (this checkout's Python) are substituted. The
guide's own namespace commands run in a throw-away network namespace standing for the
machine (``unshare -n``), with a veth end as its ``eth1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import peer_namespaces
from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2
from ipseclab.lab import strongswan
from ipseclab.lab.strongswan import Charon

pytestmark = [
    pytest.mark.root,
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "testing-a-gateway.md").read_text()
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# charon's side: the mirror of the guide's swanctl.conf.
CHARON_CONF = """\
connections {
  test {
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048
    local {
      auth = psk
      id = 192.0.2.2
    }
    remote {
      auth = psk
      id = 192.0.2.1
    }
    children {
      net {
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = aes128gcm16
      }
    }
  }
}
secrets {
  ike-test {
    id = 192.0.2.1
    secret = "a long secret only for this test 0123456789"
  }
}
"""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, re.S)


def _commands(block: str) -> list[str]:
    """The shell lines of a block, continuation lines joined, trailing comments dropped."""
    text = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.strip()]


def _run(ns: str | None, command: str, out: Path, timeout: float = 60) -> tuple[int, str]:
    """``bash -c COMMAND`` (in ``ns``); output through files, not pipes, so that a command
    that leaves a process in the background (``... &``) returns at once."""
    args = ["bash", "-c", command]
    if ns is not None:
        args = ["ip", "netns", "exec", ns, *args]
    with open(out, "w") as f:
        proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=ROOT, env=ENV, timeout=timeout)
    return proc.returncode, out.read_text()


def _wait(what: str, ok: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.05)


def _alive(pidfile: Path) -> int | None:
    """The PID in ``pidfile`` if that process still runs."""
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def test_guide_blocks_are_where_the_test_expects_them() -> None:
    sessions = [b for b in _blocks("sh") if "ip netns" not in b]
    assert len(sessions) == 8 and len(_blocks("conf")) == 1
    assert len([b for b in _blocks("sh") if "ip netns" in b]) == 2


@pytest.mark.skipif(not strongswan.available(), reason="charon-systemd is not installed")
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_guide_runs_against_charon(tmp_path: Path) -> None:
    work = tmp_path / "gw-test"
    work.mkdir()
    name = f"ipldoc-{os.getpid()}"

    def local(command: str) -> str:
        command = command.replace("out/gw-test", str(work)).replace("--name gw-test",
                                                                     f"--name {name}")
        command = command.replace(".venv/bin/ipseclab", f"{sys.executable} -m ipseclab")
        return re.sub(r"\beth1\b", "wan0", command)

    (work / "swanctl.conf").write_text(_blocks("conf")[0])
    commands = [local(c) for b in _blocks("sh") if "ip netns" not in b for c in _commands(b)]
    gw_log = work / "gateway.log"
    with peer_namespaces("ipldoc", "192.0.2.1", "192.0.2.2") as (ours, theirs):
        charon = Charon(tmp_path / "charon", lambda args, **kw: subprocess.Popen(
            ["ip", "netns", "exec", theirs, *args], **kw))
        charon.start()
        try:
            charon.install_config("", CHARON_CONF)
            charon.load_all()
            outputs = []
            for i, command in enumerate(commands):
                rc, out = _run(ours, command, tmp_path / f"cmd{i}.out")
                assert rc == 0, f"{command}\n{out}"
                _after(command, tmp_path / f"cmd{i}.out", work, name)
                outputs.append((command, (tmp_path / f"cmd{i}.out").read_text()))
        finally:
            for pidfile in (work / "gateway.pid", work / "tcpdump.pid"):
                pid = _alive(pidfile)
                if pid is not None:
                    os.kill(pid, 15)
            charon_sas = charon.list_sas() if charon.proc is not None else None
            charon.stop()

    def out(fragment: str) -> str:
        return next(o for c, o in outputs if fragment in c)

    # check, probe
    assert "net: TUNNEL" in out(" check ") and "start none" in out(" check ")
    full = out("probe 192.0.2.2")
    assert "accepts aes128gcm16 (SHOULD)" in full and "key shares: refuses" in full
    assert "real offer: chose aes128gcm16-prfsha256-x25519" in full
    probe = json.loads((work / "probe.json").read_text())
    assert probe["full"] is None and probe["share_checks"]
    assert {c["verdict"] for c in probe["share_checks"]} == {"refused"}
    assert "port 4500" in out("--port 4500") and "accepts modp2048 (MUST)" in out("--port 4500")
    # the gateway up, its rule; ctl
    rules = [o for c, o in outputs if c == "ip rule"]
    assert "not from all fwmark 0x1e5 lookup 485" in rules[0]
    assert "ipsec0" in out("show ipsec0")
    assert "esp proposals: aes128gcm16" in out("list-conns")
    assert "initiating test (child net) by initiate" in out("initiate net")
    sas = [o for c, o in outputs if c.endswith("list-sas")]
    assert "ESTABLISHED" in sas[0] and "INSTALLED, TUNNEL-in-UDP, ESP:aes128gcm16" in sas[0]
    assert "3 received" in out("ping -c 3 10.2.0.1")
    assert "10.2.0.0/24 dev ipsec0" in out("table 485") and "src 10.1.0.1" in out("table 485")
    assert "rekeying net{1}" in out("rekey net")
    assert out("rekey test").strip() == "rekeying test"
    assert "rekeyed 1 times" in sas[1]
    assert "terminating net{1}" in out("terminate net")
    # No SA but, within 5 s of the rekey, the old inbound SA (RFC 7296 §2.8 make-before-break)
    assert sas[2].strip() == "no SAs" or re.fullmatch(
        r"  net: rekeyed, its old inbound SA [0-9a-f]{8} kept a few seconds for packets in"
        r" flight \(\d+ packets\)\n?", sas[2]), sas[2]
    # stopped: the rule is gone, the key logs stay
    assert "is stopping" in out(" stop")
    assert "fwmark" not in rules[1]
    listing = out(f"ls {work}")
    assert "esp_sa" in listing and "wan.pcap" in listing and "gateway.pid" not in listing
    # charon: nothing established after terminate; the half-open IKE SA of probe's real offer
    # (charon drops it 30 s after probe: keep the last word to "nothing established")
    assert {sa["state"] for sa in charon_sas} <= {"CONNECTING"}, charon_sas
    # the capture, decoded: IKE opened, every ESP packet opened and checked
    decoded = out(" decode ").splitlines()
    counted = re.fullmatch(r"(\d+) frames: (\d+) ok", decoded[-1])
    assert counted and counted[1] == counted[2], decoded[-1]
    assert sum(" esp   ok " in line for line in decoded) >= 6
    assert sum("echo request" in line for line in decoded) == 3
    assert any("IKE_AUTH #1 request from initiator: SK{IDi" in line for line in decoded)
    assert any("CREATE_CHILD_SA" in line for line in decoded)
    assert "        TSr: 10.2.0.0/24" in decoded
    if shutil.which("tshark") is not None:
        shown = out("tshark")
        assert shown.count("Echo (ping) request") == 3 and "IKE_AUTH" in shown
    # the log: every message, debug details, no key
    grepped = out("grep -E")
    assert "sent to 192.0.2.2[500]: IKE_SA_INIT #0 request from initiator" in grepped
    assert "received from 192.0.2.2[4500]: IKE_AUTH #1 response from responder: SK{IDr" \
        in grepped
    log = gw_log.read_text()
    assert "SA (IKE): aes128gcm16-prfsha256-x25519" in log and "IDr: ID_IPV4_ADDR 192.0.2.2" in log
    esp_file, ike_file = keylog_dir_layout(work)
    keys = [e.encryption_key.hex() for e in read_esp_sa(esp_file)]
    keys += [k.hex() for e in read_ikev2(ike_file) for k in (e.sk_ei, e.sk_er)]
    assert len(keys) >= 8
    assert not [k for k in keys if k in log or k[:16] in log]


def _after(command: str, out: Path, work: Path, name: str) -> None:
    """Wait for what a command started, as a user reads the screen before the next one."""
    gw_log = work / "gateway.log"

    def logged(text: str) -> Callable[[], bool]:
        return lambda: text in gw_log.read_text()

    if command.startswith("tcpdump"):
        _wait("tcpdump", lambda: "listening on" in out.read_text())
    elif " gateway " in command:
        _wait("the gateway's control socket", lambda: Path(f"/run/ipseclab/{name}.sock")
              .exists() and logged("up: TUN ipsec0")())
    elif command.endswith("initiate net"):
        _wait("the child SA", logged("child SA net{1} established"))
    elif command.endswith("rekey net"):
        _wait("the child SA rekey", logged("deleted (rekeyed)"))
    elif command.endswith("rekey test"):
        _wait("the IKE SA rekey", logged("rekeyed to"))
    elif command.endswith("terminate net"):
        _wait("the child SA's Delete", logged("child SA net{1} deleted"))
    elif command.endswith("terminate test"):
        _wait("the IKE SA's Delete", logged("deleted: deleted locally"))
    elif command.endswith(" stop"):
        pid = int((work / "gateway.pid").read_text()) if (work / "gateway.pid").exists() else 0
        _wait("the gateway's exit", lambda: not (work / "gateway.pid").exists()
              and not (pid and Path(f"/proc/{pid}").exists()))
    elif command.startswith("kill"):
        _wait("tcpdump's exit", lambda: _alive(work / "tcpdump.pid") is None)


def test_guide_namespace_commands(tmp_path: Path) -> None:
    """The guide's namespace: made in a stand-in for the machine (``unshare -n``, a veth end
    as ``eth1``), it holds the interface and both addresses; ``ip netns del`` removes it."""
    setup, teardown = [b for b in _blocks("sh") if "ip netns" in b]
    ns = f"ipldoc-{os.getpid()}-g"
    # The veth's other end lives in a namespace of its own: left in the unshared one, it
    # would vanish with it when bash exits, and take eth1 along (a race with the checks).
    peer = f"{ns}p"
    subprocess.run(["ip", "netns", "add", peer], check=True, capture_output=True)
    script = f"set -e\nip link add eth1 type veth peer name eth1p netns {peer}\n" + "\n".join(
        c.replace("ipsec-test", ns) for c in _commands(setup))
    assert _commands(setup)[-1] == "ip netns exec ipsec-test bash"  # stdin is /dev/null here
    try:
        rc, out = _run(None, f"unshare -n bash -c {_quote(script)}", tmp_path / "setup.out")
        assert rc == 0, out
        shown = subprocess.run(["ip", "-n", ns, "-br", "addr"], capture_output=True, text=True,
                               check=True).stdout
        assert re.search(r"^eth1\S*\s+\S+\s+192\.0\.2\.1/24", shown, re.M), shown
        assert re.search(r"^lo\s+UNKNOWN\s+.*10\.1\.0\.1/24", shown, re.M), shown
        for command in _commands(teardown):
            rc, out = _run(None, command.replace("ipsec-test", ns), tmp_path / "del.out")
            assert rc == 0, out
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in listed.split()
    finally:
        for name in (ns, peer):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
