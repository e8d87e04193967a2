"""The ``ipseclab`` command: one subcommand per job, over all layers.

Every error ipseclab raises on purpose reaches the user as one line (``ipseclab: error:
...``) and a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence, Sized

from ipseclab import __version__
from ipseclab.errors import ConfigError, IpsecLabError

Setup = Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, tuple[str, Setup]] = {}


def command(name: str, help: str):
    """Register a subcommand: the function adds its arguments and returns its runner."""
    def wrap(fn: Setup) -> Setup:
        COMMANDS[name] = (help, fn)
        return fn
    return wrap


def _progress(label: str) -> Callable[[int], None]:
    def show(n: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{label}: {n} frames", end="", file=sys.stderr, flush=True)
    return show


@command("encap", "protect a plaintext capture with the SAs of an 'ip xfrm' file")
def _encap(p: argparse.ArgumentParser):
    p.description = ("Apply the outbound policies of an 'ip xfrm' file to every packet of a"
                     " plaintext capture; write the protected capture and its key log.")
    p.add_argument("sa_file", help="file of 'ip xfrm state/policy add' lines")
    p.add_argument("input", help="plaintext capture (pcap or pcapng)")
    p.add_argument("output", help="protected capture to write (pcap, raw IP)")
    p.add_argument("--esp-sa", metavar="KEYLOG",
                   help="write Wireshark's esp_sa key log for the SAs here")

    def run(a: argparse.Namespace) -> int:
        from ipseclab.capture.encap import encap_capture, write_keylog
        from ipseclab.config import xfrm

        _refuse_overwrite("the output", a.output, {"the 'ip xfrm' file": a.sa_file})
        if a.esp_sa:
            _refuse_overwrite("--esp-sa", a.esp_sa, {
                "the 'ip xfrm' file": a.sa_file, "the input capture": a.input,
                "the output capture": a.output})
        config = xfrm.load(a.sa_file)
        report = encap_capture(config, a.input, a.output, _progress("encap"))
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(f"encap: {report.summary()} -> {a.output}")
        for line in report.details:
            print(f"  {line}")
        if a.esp_sa:
            n = write_keylog(config, a.esp_sa)
            print(f"encap: {n} ESP SAs -> {a.esp_sa}")
        return 0
    return run


def _refuse_overwrite(what: str, path: str, inputs: dict[str, str]) -> None:
    """Stop before a file the command writes replaces one it reads (or a directory)."""
    from pathlib import Path

    if Path(path).is_dir():
        raise IpsecLabError(f"{path}: {what} is a directory; name a file")
    for name, other in inputs.items():
        if Path(path).resolve() == Path(other).resolve():
            raise IpsecLabError(f"{path}: {what} would overwrite {name}")


@command("decode", "decode a capture: every frame, ESP opened and AH checked with keys")
def _decode(p: argparse.ArgumentParser):
    p.description = ("Decode every frame of a capture: ESP opened, AH checked and IKE's SK"
                     " payloads opened with the keys given.")
    p.add_argument("capture", help="pcap or pcapng file")
    p.add_argument("--esp-sa", metavar="KEYLOG", action="append", default=[],
                   help="Wireshark esp_sa key log (may be repeated)")
    p.add_argument("--sa-file", metavar="XFRM", action="append", default=[],
                   help="'ip xfrm' file whose SAs give keys (ESP and AH; may be repeated)")
    p.add_argument("--ikev2", metavar="KEYLOG", action="append", default=[],
                   help="Wireshark ikev2_decryption_table key log: opens IKE's SK payloads"
                   " (may be repeated)")
    p.add_argument("--json", action="store_true", help="one JSON object per frame and line")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="under each IKE message: its proposals, traffic selectors, identities")

    def run(a: argparse.Namespace) -> int:
        from ipseclab.capture.decode import KeyRing, decode_capture
        from ipseclab.capture.summary import frame_line
        from ipseclab.config import xfrm
        from ipseclab.keylog import read_esp_sa, read_ikev2

        entries = [e for path in a.esp_sa for e in read_esp_sa(path)]
        sas = [sa for path in a.sa_file for sa in xfrm.load(path).states]
        ike_entries = [e for path in a.ikev2 for e in read_ikev2(path)]
        try:
            ring = KeyRing(entries, sas, ike_entries=ike_entries)
        except ConfigError as exc:  # an esp_sa line whose algorithm or key does not fit
            raise ConfigError(exc.message, file=", ".join(a.esp_sa) or None, token=exc.token
                              ) from None
        out = sys.stdout
        counts: dict[str, int] = {}
        for frame in decode_capture(a.capture, ring):
            counts[frame.status] = counts.get(frame.status, 0) + 1
            if a.json:
                out.write(frame.json_line() + "\n")
            else:
                out.write(frame_line(frame) + "\n")
                if a.verbose and frame.ike is not None:
                    out.writelines(f"        {line}\n" for line in frame.ike.details())
        if not a.json:
            total = sum(counts.values())
            print(f"{total} frames: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        return 0
    return run


def _scenario_path(name: str) -> str:
    """A scenario by file path, or by name from the repository's topologies/scenarios/."""
    from pathlib import Path

    if Path(name).exists():
        return name
    here = Path(__file__).resolve().parent.parent / "topologies" / "scenarios"
    for candidate in (here / name, here / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    known = sorted(p.stem for p in here.glob("*.yaml")) if here.is_dir() else []
    raise IpsecLabError(f"no scenario '{name}'" + (f"; known: {', '.join(known)}" if known else ""))


@command("run", "run a lab scenario end to end: topology, gateways, traffic, checks")
def _run(p: argparse.ArgumentParser):
    p.description = ("Build a scenario's Mininet topology, start its gateways, send its"
                     " traffic, capture its links and judge its checks. Needs root.")
    p.add_argument("scenario", help="scenario name (see topologies/scenarios) or YAML file")
    p.add_argument("--out", default=None, help="directory for pcaps, key log and result"
                   " (default: out/SCENARIO)")
    p.add_argument("--impl", choices=["ipseclab", "strongswan", "none"],
                   help="run every gateway with this implementation")
    p.add_argument("--cli", action="store_true", help="open the Mininet CLI before tear-down")

    def run(a: argparse.Namespace) -> int:
        import os
        import time
        from pathlib import Path

        from ipseclab.lab.runner import run_scenario

        if os.geteuid() != 0:
            raise IpsecLabError("ipseclab run builds network namespaces: run it as root")
        path = _scenario_path(a.scenario)
        out = Path(a.out or Path("out") / Path(path).stem)
        start = time.monotonic()

        def progress(msg: str) -> None:
            print(f"[{time.monotonic() - start:6.1f}s] {msg}", flush=True)

        result = run_scenario(path, out, cli=a.cli, progress=progress, impl=a.impl)
        print()
        print(result.table())
        print()
        print(f"captures and key log in {out}/ (open with: XDG_CONFIG_HOME={out} wireshark"
              f" {out}/wan.pcap)")
        verdict = "PASSED" if result.passed else "FAILED"
        print(f"scenario {result.name}: {verdict} in {time.monotonic() - start:.1f} s")
        return 0 if result.passed else 1
    return run


@command("clean", "remove namespaces, links and processes a killed lab run left behind")
def _clean(p: argparse.ArgumentParser):
    p.add_argument("--all", action="store_true", help="also runs whose owner is still alive")

    def run(a: argparse.Namespace) -> int:
        from ipseclab.lab.cleanup import RUN_ROOT, clean, untracked_links

        removed = clean(include_live=a.all)
        for line in removed:
            print(line)
        for link in untracked_links():
            print(f"left alone: link {link} (no run recorded under {RUN_ROOT}; a run with"
                  " another IPSECLAB_RUN_DIR may own it; --all removes it)")
        print(f"clean: {len(removed)} objects removed" if removed else "clean: nothing to do")
        return 0
    return run


@command("check", "load swanctl.conf or 'ip xfrm' files and show what ipseclab reads")
def _check(p: argparse.ArgumentParser):
    p.description = ("Load each file as 'ipseclab gateway' would (a swanctl.conf, or a file of"
                     " 'ip xfrm' lines) and show what it holds and its warnings, or the error"
                     " that stops it. Nothing is started.")
    p.add_argument("files", nargs="+", metavar="FILE")

    def run(a: argparse.Namespace) -> int:
        failed = 0
        for path in a.files:
            try:
                print(f"{path}:\n" + "\n".join(f"  {line}" for line in _check_file(path)))
            except IpsecLabError as exc:
                print(f"ipseclab: error: {exc}", file=sys.stderr)
                failed += 1
        return 2 if failed else 0
    return run


def _check_file(path: str) -> list[str]:
    """What ``ipseclab check`` prints of one file, as lines."""
    from pathlib import Path

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise IpsecLabError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = data.decode(errors="replace")  # enough to tell the formats apart; the loaders
    # say which byte of which line is not UTF-8
    words = [line.split()[0] for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if words and words[0] == "ip":
        from ipseclab.config import xfrm

        manual = xfrm.load(path)
        lines = [f"'ip xfrm' file: {_count(manual.states, 'SA')},"
                 f" {_count(manual.policies, 'policy', 'policies')}"]
        for sa in manual.states:
            extras = [f"reqid {sa.reqid}", f"replay-window {sa.replay_window}"]
            if sa.esn:
                extras.append("esn")
            if sa.encap is not None:
                extras.append(f"espinudp {sa.encap.sport} {sa.encap.dport}")
            lines.append(f"SA {sa.name}, {sa.mode}, {sa.algorithms}, {', '.join(extras)}")
        for policy in manual.policies:
            head = (f"policy {policy.selector} dir {policy.direction}"
                    f" {policy.action.name.lower()} priority {policy.priority}")
            lines.append(head + "".join(f", tmpl {t}" for t in policy.templates))
        return lines
    from ipseclab.config.swanctl import load_swanctl
    from ipseclab.drivers.cli_gateway import format_conns
    from ipseclab.drivers.ike_gateway import IkeGateway

    loaded = load_swanctl(path)
    gateway = IkeGateway.from_loaded(loaded, path)
    lines = [f"swanctl.conf: {_count(loaded.connections, 'connection')}"]
    lines += format_conns(gateway.list_conns()).splitlines()
    lines += [f"warning: {w}" for w in loaded.warnings]
    return lines


def _count(items: Sized, one: str, many: str = "") -> str:
    n = len(items)
    return f"{n} {one if n == 1 else many or one + 's'}"


@command("doctor", "say what this machine lacks for the lab and how to install it")
def _doctor(p: argparse.ArgumentParser):
    def run(a: argparse.Namespace) -> int:
        from ipseclab.lab.doctor import doctor

        checks = doctor()
        for check in checks:
            print(check)
        return 0 if all(c.ok for c in checks) else 1
    return run


@command("lab", "start JupyterLab on the notebooks (the course)")
def _lab(p: argparse.ArgumentParser):
    p.description = ("Start JupyterLab on notebooks/. The lab notebooks build network"
                     " namespaces, so on a lab VM run it as root; it listens on localhost only"
                     " unless --ip says otherwise.")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: localhost)")

    def run(a: argparse.Namespace) -> int:
        import importlib.util
        import os
        from pathlib import Path

        if importlib.util.find_spec("jupyterlab") is None:
            raise IpsecLabError("JupyterLab is not installed: run IPSECLAB_EXTRAS=dev,notebooks"
                                " ./scripts/setup.sh (or pip install 'ipseclab[notebooks]')")
        notebooks = Path(__file__).resolve().parent.parent / "notebooks"
        args = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={notebooks}",
                f"--ip={a.ip}", f"--port={a.port}", "--no-browser"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        os.execv(sys.executable, args)
        return 0
    return run


from ipseclab.drivers.cli_gateway import register as _register_gateway  # noqa: E402

_register_gateway(command)

from ipseclab.drivers.ike_probe import register as _register_probe  # noqa: E402

_register_probe(command)

from ipseclab.attacks.cli import register as _register_attack  # noqa: E402

_register_attack(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipseclab", description="A hands-on IPsec lab: ESP, AH and IKEv2 in Python.")
    parser.add_argument("--version", action="version", version=f"ipseclab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (text, setup) in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        p.set_defaults(run=setup(p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except IpsecLabError as exc:
        print(f"ipseclab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ipseclab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file the command could not read or write: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ipseclab: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
