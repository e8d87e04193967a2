"""``impl: ipseclab``: run ``ipseclab gateway`` on a lab node.

The gateway gets the node's configuration files (an ``ip xfrm`` file of manual SAs,
``--manual``, and/or a swanctl.conf for IKEv2, ``--swanctl``), a control socket in the
node's work directory, and the run's key-log directory, so every capture of the run opens
decrypted in Wireshark with ``XDG_CONFIG_HOME=OUT``. The lab's ``sa_counters`` check reads
the SA counters through the control socket.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path

from ipseclab.drivers.cli_gateway import request_gateway
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.lab.network import GatewayLauncher, LabNode, ProcessHandle, register_launcher
from ipseclab.lab.runner import FAIL, PASS, SKIP, CheckResult, register_check
from ipseclab.lab.topology import GatewaySpec

READY_TIMEOUT = 15.0
_CONTROL: dict[str, Path] = {}  # node name -> control socket of its running gateway


class IpseclabLauncher(GatewayLauncher):
    """Starts one ``ipseclab gateway`` process in a node and stops it through its control socket."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: Path | None = None
        self.log = Path("gateway.log")
        self.node_name = ""

    def start(self, node: LabNode, gateway: GatewaySpec, workdir: Path) -> ProcessHandle | None:
        self.spawn(node, gateway, workdir)
        return self.wait_ready()

    def parallel(self, gateway: GatewaySpec) -> bool:
        # Manual SAs send nothing until traffic comes; an IKE config may initiate at once.
        return not any(c.name.endswith(".conf") for c in gateway.config)

    def spawn(self, node: LabNode, gateway: GatewaySpec, workdir: Path) -> None:
        manual = [c for c in gateway.config if c.suffix == ".xfrm"]
        swanctl = [c for c in gateway.config if c.name.endswith(".conf")]
        if not manual and not swanctl:
            raise ConfigError(f"{node.name}: impl ipseclab needs an 'ip xfrm' file (*.xfrm) of"
                              " manual SAs or a swanctl.conf (*.conf) for IKEv2")
        self.node_name = node.name
        self.control = workdir / "control.sock"
        self.log = workdir / "gateway.log"
        args = [sys.executable, "-m", "ipseclab", "gateway", "--name", node.name,
                "--control", str(self.control), "--keylog-dir", str(workdir.parent)]
        if manual:
            args += ["--manual", str(manual[0])]
        if swanctl:
            conf = swanctl[0]
            if gateway.options.get("pki") == "lab":  # certificates made for this run
                from ipseclab.lab.labpki import swanctl_with_lab_pki

                conf = swanctl_with_lab_pki(conf, workdir, workdir.parent)
            args += ["--swanctl", str(conf)]
        # options: {args: [...]} passes more options, e.g. --ike-retransmit-tries 2;
        # {pki: lab} puts the run's lab PKI beside the swanctl.conf (ipseclab.lab.labpki)
        args += [str(x) for x in gateway.options.get("args", [])]
        with open(self.log, "wb") as err:
            self.proc = node.popen(args, "ipseclab gateway", stdout=subprocess.PIPE, stderr=err)

    def wait_ready(self) -> ProcessHandle | None:
        try:
            self._wait_ready(self.log)
        except BaseException:
            # The lab stops only gateways that started; this one must not linger (or stay a
            # zombie with an open pipe) until the lab's tear-down.
            self.stop()
            raise
        _CONTROL[self.node_name] = self.control
        return self.proc

    def _wait_ready(self, log: Path) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=deadline - time.monotonic()):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                if b"ready" in line:
                    return
        finally:
            sel.close()
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise IpsecLabError(f"{self.node_name}: ipseclab gateway did not come up"
                            + (": " + " / ".join(tail) if tail else ""))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _CONTROL.pop(self.node_name, None)
        if proc is None:
            return
        if proc.poll() is None and self.control is not None:
            try:
                request_gateway(self.control, {"command": "stop"}, timeout=3.0)
                proc.wait(timeout=5)
            except (IpsecLabError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def list_sas(node: str) -> list[dict]:
    """The SAs of the ipseclab gateway running on ``node``, as ``ctl list-sas --json`` shows."""
    control = _CONTROL.get(node)
    if control is None:
        raise IpsecLabError(f"no ipseclab gateway is running on {node}")
    return request_gateway(control, {"command": "list-sas"})


def control_socket(node: str) -> Path | None:
    """The control socket of the ipseclab gateway running on ``node`` (for ``ctl`` calls)."""
    return _CONTROL.get(node)


def check_sa_counters(ctx, spec) -> CheckResult:
    """Every SA of the gateway carried packets and none failed its ICV or replay check."""
    node = spec.args["gateway"]
    if node not in _CONTROL:
        return CheckResult(spec.name, SKIP, f"{node} runs no ipseclab gateway")
    sas = list_sas(node)
    if not sas:
        return CheckResult(spec.name, FAIL, f"{node} has no SAs")
    idle = [s for s in sas if not s.get("packets")]
    bad = [s for s in sas if s.get("auth_failed") or s.get("replay") or s.get("bad_padding")]
    summary = ", ".join(f"{s['direction']} {s['spi']} {s.get('algorithms', '')}: "
                        f"{s.get('packets', 0)} packets" for s in sas)
    if idle or bad:
        return CheckResult(spec.name, FAIL, f"idle or failing SAs: {summary}")
    return CheckResult(spec.name, PASS, summary)


register_launcher("ipseclab", IpseclabLauncher)
register_check("sa_counters", check_sa_counters)
