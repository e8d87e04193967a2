"""``ipseclab gateway`` (the daemon) and ``ipseclab ctl`` (its control client).

Register both in ``ipseclab/cli.py`` with::

    from ipseclab.drivers.cli_gateway import register as _register_gateway
    _register_gateway(command)

Until then ``python -m ipseclab.drivers.cli_gateway gateway|ctl ...`` runs them.
The control protocol is JSON lines over a Unix socket: ``{"command": "list-sas"}`` in,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}`` out.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ipseclab.errors import IpsecLabError

CTL_COMMANDS = ("list-sas", "list-policies", "load", "flush", "stats", "stop",
                "list-conns", "initiate", "terminate", "rekey", "reauth", "load-creds")
_NEEDS_TARGET = {"initiate": "CHILD|CONN", "terminate": "IKE|CONN|CHILD", "rekey": "IKE|CHILD",
                 "reauth": "IKE|CONN"}


def setup_gateway(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Arguments of ``ipseclab gateway``; returns its runner."""
    p.description = ("Run the IPsec gateway in this network namespace: a TUN device for"
                     " the traffic the SPD protects, raw ESP/AH sockets and UDP 4500 on the"
                     " wire, a control socket for 'ipseclab ctl'. Needs root.")
    p.add_argument("--manual", metavar="FILE", type=Path,
                   help="manual SAs and policies ('ip xfrm state/policy add' lines)")
    p.add_argument("--swanctl", metavar="FILE", type=Path,
                   help="IKEv2 connections and secrets (swanctl.conf); may go with --manual")
    p.add_argument("--ike-retransmit-base", type=float, default=1.0, metavar="SECONDS",
                   help="first IKE retransmission after SECONDS, doubling (default 1)")
    p.add_argument("--ike-retransmit-tries", type=int, default=5, metavar="N",
                   help="retransmissions before a peer counts as dead (default 5)")
    p.add_argument("--break-before-make", action="store_true",
                   help="reauthentication deletes the old IKE SA before it makes the new one"
                        " (strongSwan's charon.make_before_break = no); default: after")
    p.add_argument("--name", help="gateway name (default: the manual file's name, or 'gw')")
    p.add_argument("--control", metavar="PATH", type=Path,
                   help="control socket (default /run/ipseclab/NAME.sock)")
    p.add_argument("--keylog-dir", metavar="DIR", type=Path,
                   help="keep Wireshark's esp_sa table in DIR/wireshark/ up to date")
    p.add_argument("--tun", default="ipsec0", help="TUN device name (default ipsec0)")
    p.add_argument("--mtu", type=int, default=1400, help="TUN MTU (default 1400)")
    p.add_argument("--mark", type=lambda s: int(s, 0), default=0x1E5,
                   help="SO_MARK of the gateway's own sockets (default 0x1e5)")
    p.add_argument("--table", type=int, default=485,
                   help="routing table for the TUN routes (default 485)")
    p.add_argument("--pidfile", type=Path, help="write the daemon's PID here")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"), help="default info")

    def run(a: argparse.Namespace) -> int:
        from ipseclab.drivers.gateway import GatewayOptions, run_gateway, setup_logging

        setup_logging(a.log_level)
        if not 576 <= a.mtu <= 65535:
            raise IpsecLabError(f"--mtu {a.mtu} is outside 576..65535")
        first = a.manual or a.swanctl
        name = a.name or (first.name.split(".")[0] if first else "gw")
        if not 0 < a.ike_retransmit_base < 3600 or not 0 <= a.ike_retransmit_tries <= 30:
            raise IpsecLabError("--ike-retransmit-base must be > 0 and < 3600 seconds and"
                                " --ike-retransmit-tries 0..30")
        if not 0 <= a.mark <= 0xFFFFFFFF or not 1 <= a.table <= 0xFFFFFFFF:
            raise IpsecLabError("--mark must be 0..0xffffffff and --table 1..4294967295")
        options = GatewayOptions(name=name, manual=a.manual, swanctl=a.swanctl,
                                 control=a.control,
                                 keylog_dir=a.keylog_dir, tun=a.tun, mtu=a.mtu, mark=a.mark,
                                 table=a.table, pidfile=a.pidfile,
                                 ike_retransmit=(a.ike_retransmit_base, a.ike_retransmit_tries),
                                 make_before_break=not a.break_before_make)
        return run_gateway(options)
    return run


def setup_ctl(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Arguments of ``ipseclab ctl``; returns its runner."""
    p.description = "Ask a running 'ipseclab gateway' about its SAs and policies, or change them."
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH", type=Path, help="the gateway's control socket")
    where.add_argument("--name", help="the gateway's name (socket /run/ipseclab/NAME.sock)")
    p.add_argument("ctl_command", metavar="COMMAND", choices=CTL_COMMANDS,
                   help=", ".join(CTL_COMMANDS))
    p.add_argument("file", nargs="?", metavar="ARG",
                   help="load: the 'ip xfrm' file; initiate: CHILD or CONN; terminate: IKE SA,"
                        " CONN or CHILD; rekey: IKE SA, CONN or CHILD; reauth: IKE SA or CONN")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")

    def run(a: argparse.Namespace) -> int:
        try:
            path = _socket_path(a.socket, a.name)
            request: dict[str, Any] = {"command": a.ctl_command}
            if a.ctl_command == "load":
                if not a.file:
                    raise IpsecLabError("load needs a file: ipseclab ctl load FILE")
                request["file"] = str(Path(a.file).resolve())
            if a.file and a.ctl_command not in _NEEDS_TARGET and a.ctl_command != "load":
                raise IpsecLabError(f"{a.ctl_command} takes no argument (got '{a.file}')")
            if a.ctl_command in _NEEDS_TARGET:
                if not a.file:
                    raise IpsecLabError(f"{a.ctl_command} needs a name: ipseclab ctl"
                                        f" {a.ctl_command} {_NEEDS_TARGET[a.ctl_command]}")
                request["target"] = a.file
            result = request_gateway(path, request)
            if a.ctl_command == "list-sas":
                try:
                    ike = request_gateway(path, {"command": "list-ike-sas"})
                except IpsecLabError:
                    ike = None  # a gateway without IKE
                if ike is not None:
                    result = {"ike_sas": ike, "sas": result} if a.json else (ike, result)
        except IpsecLabError as exc:
            print(f"ipseclab: error: {exc}", file=sys.stderr)
            return 1
        if a.json:
            print(json.dumps(result, indent=2))
        else:
            print(format_result(a.ctl_command, result))
        return 0
    return run


def register(command: Callable[[str, str], Callable]) -> None:
    """Register ``gateway`` and ``ctl`` with ``ipseclab.cli.command``."""
    command("gateway", "run the IPsec gateway daemon in this network namespace")(setup_gateway)
    command("ctl", "ask a running gateway: list SAs/connections, initiate, rekey, load, stop"
                   " ...")(setup_ctl)


def _socket_path(path: Path | None, name: str | None) -> Path:
    from ipseclab.drivers.control import CONTROL_DIR, default_control_path

    if path is not None:
        return path
    if name is not None:
        return default_control_path(name)
    found = sorted(CONTROL_DIR.glob("*.sock")) if CONTROL_DIR.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise IpsecLabError(f"no gateway is running (no socket in {CONTROL_DIR})")
    names = ", ".join(p.stem for p in found)
    raise IpsecLabError(f"several gateways are running ({names}); pick one with --name")


def request_gateway(path: Path, request: dict[str, Any], timeout: float = 10.0) -> Any:
    """Send one request to the gateway at ``path`` and return its result, or raise."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise IpsecLabError(f"no gateway at {path} (is 'ipseclab gateway' running?)") \
                from None
        except PermissionError:
            raise IpsecLabError(f"no permission to talk to {path} (try as root)") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except TimeoutError:
        raise IpsecLabError(f"the gateway at {path} did not answer in {timeout:g} s") from None
    except OSError as exc:
        raise IpsecLabError(f"talking to {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not buf:
        raise IpsecLabError(f"the gateway at {path} closed the connection without a reply")
    try:
        reply = json.loads(buf)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise IpsecLabError(f"{path} answered something that is not an ipseclab gateway's reply")
    if not reply.get("ok"):
        raise IpsecLabError(str(reply.get("error", "the gateway refused the request")))
    return reply.get("result")


# -- text output ---------------------------------------------------------------------------


def format_result(command: str, result: Any) -> str:
    if command == "list-sas":
        if isinstance(result, tuple):
            return format_ike_sas(*result)
        return format_sas(result)
    if command == "list-conns":
        return format_conns(result)
    if command in ("initiate", "terminate", "rekey", "reauth"):
        return format_action(command, result)
    if command == "list-policies":
        return format_policies(result)
    if command == "stats":
        return format_stats(result)
    if command == "load":
        return f"loaded {result['states']} SAs and {result['policies']} policies"
    if command == "flush":
        return f"flushed {result['states']} SAs and {result['policies']} policies"
    if command == "stop":
        return f"gateway {result['stopping']} is stopping"
    if command == "load-creds":
        return (f"loaded {result['crls']} CRLs for"
                f" {', '.join(result['connections']) or 'no connection'}")
    return json.dumps(result)


def format_sas(sas: list[dict[str, Any]]) -> str:
    """Grouped by reqid, as ``swanctl --list-sas`` groups child SAs."""
    if not sas:
        return "no SAs"
    groups: dict[tuple, list[dict]] = {}
    for sa in sas:
        groups.setdefault((sa["reqid"], sa["protocol"], sa["mode"]), []).append(sa)
    lines = []
    for (reqid, proto, mode), members in groups.items():
        encap = "-in-UDP" if any(m["encap"] for m in members) else ""
        algs = sorted({m["algorithms"] for m in members})
        lines.append(f"manual{{reqid {reqid}}}: INSTALLED, {mode.upper()}{encap}, "
                     f"{proto.upper()}:{','.join(algs)}")
        for sa in sorted(members, key=lambda m: m["direction"]):
            lines.append(
                f"  {sa['direction']:<3} {sa['spi'][2:]}, {sa['bytes']:>10} bytes, "
                f"{sa['packets']:>8} packets, seq {sa['seq']}  "
                f"({sa['src']} -> {sa['dst']})")
            drops = {k: sa[k] for k in ("replay", "too_old", "auth_failed", "bad_padding",
                                        "malformed", "policy_mismatch") if sa[k]}
            if drops:
                lines.append("      dropped: " + ", ".join(f"{k} {v}" for k, v in drops.items()))
    return "\n".join(lines)


def format_ike_sas(ike_sas: list[dict[str, Any]], sas: list[dict[str, Any]]) -> str:
    """IKE SAs with their child SAs, in the shape of ``swanctl --list-sas``; then the SAs
    no IKE SA made (manual ones)."""
    lines = []
    for n, ike in enumerate(ike_sas, 1):
        spi_i, spi_r = ike["name"][:16], ike["name"][16:]
        star = ("*", "") if ike["initiator"] else ("", "*")
        lines.append(f"{ike['connection']}: #{n}, {ike['state']}, IKEv2, {spi_i}_i{star[0]}"
                     f" {spi_r}_r{star[1]}")
        local, remote = ike["local"], ike["remote"]
        lines.append(f"  local  '{ike.get('local_id', '')}' @ {local[0]}[{local[1]}]")
        lines.append(f"  remote '{ike.get('remote_id', '')}' @ {remote[0]}[{remote[1]}]")
        if "proposal" in ike:
            nat = ", NAT-T" if ike.get("nat") else ""
            lines.append(f"  {ike['proposal']}{nat}")
            lines.append(f"  established {ike['established']:g}s ago, rekeyed"
                         f" {ike.get('rekeys', 0)} times")
        for child in ike["children"]:
            encap = "-in-UDP" if any(s["encap"] for s in child["sas"]) else ""
            protocol = (child["sas"][0]["protocol"] if child["sas"] else "esp").upper()
            lines.append(f"  {child['name']}: #{child['reqid']}, reqid {child['reqid']},"
                         f" INSTALLED, {child['mode'].upper()}{encap},"
                         f" {protocol}:{child['proposal']}")
            lines.append(f"    installed {child['installed']:g}s ago")
            for sa in child["sas"]:
                lines.append(f"    {sa['direction']:<3} {sa['spi'][2:]}, {sa['bytes']:>10} bytes,"
                             f" {sa['packets']:>8} packets")
            lines.append(f"    local  {' '.join(child['local_ts'])}")
            lines.append(f"    remote {' '.join(child['remote_ts'])}")
    for sa in sas:
        if sa.get("retiring"):
            lines.append(f"  {sa['child']}: rekeyed, its old inbound SA {sa['spi'][2:]} kept a"
                         f" few seconds for packets in flight ({sa['packets']} packets)")
    manual = [s for s in sas if "ike_sa" not in s]
    if manual:
        lines.append(format_sas(manual))
    return "\n".join(lines) or "no SAs"


def format_conns(conns: list[dict[str, Any]]) -> str:
    """Connections as ``swanctl --list-conns`` shows them."""
    lines = []
    for c in conns:
        reauth = c.get("reauth_time", 0)
        lines.append(f"{c['name']}: IKEv2, "
                     + (f"reauthentication every {reauth:g}s, " if reauth else "")
                     + (f"rekeying every {c['rekey_time']:g}s" if c["rekey_time"]
                        else "no rekeying")
                     + (f", dpd delay {c['dpd_delay']:g}s" if c["dpd_delay"] else ""))
        lines.append(f"  local:  {','.join(c['local_addrs'])}")
        lines.append(f"  remote: {','.join(c['remote_addrs'])}")
        lines.append(f"  proposals: {c['proposals']}")
        lines.append(f"  local {c['local_auth']} authentication:")
        lines.append(f"    id: {c['local_id'] or '%any'}")
        lines.append(f"  remote {c['remote_auth']} authentication:")
        lines.append(f"    id: {c['remote_id']}")
        for ch in c["children"]:
            trap = ", trap installed" if ch["trapped"] else ""
            volume = "".join(f" or {ch[key]} {unit}" for key, unit in (
                ("rekey_bytes", "bytes"), ("rekey_packets", "packets")) if ch.get(key))
            tfc = (f", TFC padding to {ch['tfc_padding']}"
                   + ("" if ch["tfc_padding"] == "mtu" else " bytes")
                   if ch.get("tfc_padding") else "")
            lines.append(f"  {ch['name']}: TUNNEL, rekeying every {ch['rekey_time']:g}s"
                         f"{volume}{tfc},"
                         f" start {ch['start_action']}, dpd {ch['dpd_action']},"
                         f" close {ch['close_action']}{trap}"
                         .replace("TUNNEL", ch["mode"].upper()))
            lines.append(f"    local:  {' '.join(ch['local_ts'])}")
            lines.append(f"    remote: {' '.join(ch['remote_ts'])}")
            if ch.get("protocol") == "ah":
                lines.append(f"    ah proposals: {ch['ah_proposals']}")
            else:
                lines.append(f"    esp proposals: {ch['esp_proposals']}")
    return "\n".join(lines) or "no connections"


def format_action(command: str, result: dict[str, Any]) -> str:
    if command == "initiate":
        return (f"initiating {result['connection']}"
                + (f" (child {result['child']})" if result.get("child") else "")
                + f" by {result['how']}")
    key, verb = {"terminate": ("terminated", "terminating"),
                 "reauth": ("reauthenticating", "reauthenticating")}.get(
        command, ("rekeyed", "rekeying"))
    done = result.get(key, [])
    return f"{verb} {', '.join(done)}" if done else f"nothing to {command}"


def format_policies(policies: list[dict[str, Any]]) -> str:
    if not policies:
        return "no policies"
    lines = []
    for p in policies:
        lines.append(f"[{p['index']}] {p['selector']} dir {p['direction']} {p['action']}"
                     f" priority {p['priority']} ({p['packets']} packets)")
        lines.extend(f"    tmpl {t}" for t in p["templates"])
    return "\n".join(lines)


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"gateway {stats['name']}: {stats['sas']} SAs, {stats['policies']} policies"]
    for part in ("engine", "driver"):
        values = stats[part]
        lines.append(f"{part}:")
        for key, value in values.items():
            if key == "by_status":
                if value:
                    lines.append("  by status: " + ", ".join(f"{k} {v}"
                                                             for k, v in sorted(value.items())))
            else:
                lines.append(f"  {key:<20} {value}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ipseclab.drivers.cli_gateway gateway|ctl ...`` (before cli.py knows them)."""
    parser = argparse.ArgumentParser(prog="ipseclab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, setup in (("gateway", setup_gateway), ("ctl", setup_ctl)):
        p = sub.add_parser(name)
        p.set_defaults(run=setup(p))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except IpsecLabError as exc:
        print(f"ipseclab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
