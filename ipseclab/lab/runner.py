"""Run a scenario: bring up its topology, capture, run the steps, judge the checks, tear down.

Captures start before the first step and stop after the last, one pcap per captured link in the
output directory. The checks then read those pcaps (``wan_only_ipsec``, ``no_plaintext``) or send
fresh traffic (``reachable``). A check never pretends: with ``impl: none`` the gateways forward in
the clear, and ``wan_only_ipsec`` fails with the packets that prove it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ipseclab.errors import IpsecLabError
from ipseclab.lab.api import Lab
from ipseclab.lab.capture import frames
from ipseclab.lab.scenario import CheckSpec, Scenario, Step, load_scenario
from ipseclab.lab.topology import Topology

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # pass, fail or skip
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASS


@dataclass
class ScenarioResult:
    name: str
    checks: list[CheckResult] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    pcaps: dict[str, Path] = field(default_factory=dict)
    impls: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every check passed (skipped checks do not count as passed)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def table(self) -> str:
        width = max([len(c.name) for c in self.checks] + [5])
        lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
        lines += [f"{c.name:<{width}}  {c.status:<6}  {c.detail}" for c in self.checks]
        return "\n".join(lines)


@dataclass
class RunContext:
    """What a check function may look at."""

    scenario: Scenario
    lab: Lab
    pcaps: dict[str, Path]
    result: ScenarioResult


CheckFn = Callable[[RunContext, CheckSpec], CheckResult]
_CHECKS: dict[str, CheckFn] = {}


def register_check(kind: str, fn: CheckFn) -> None:
    """Provide (or replace) the function behind a check kind, e.g. ``sa_counters``."""
    _CHECKS[kind] = fn


def run_scenario(
    path: str | Path,
    out_dir: str | Path,
    cli: bool = False,
    progress: Callable[[str], None] | None = None,
    impl: str | None = None,
) -> ScenarioResult:
    """Run the scenario at ``path``; pcaps and ``result.txt`` go to ``out_dir``.

    ``impl`` replaces every gateway's implementation (``none``, ``ipseclab``, ``strongswan``).
    Configuration errors raise ConfigError before anything starts; failures of steps and checks
    are reported in the result.
    """
    say = progress or (lambda _msg: None)
    scenario = load_scenario(path, impl)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ScenarioResult(scenario.name)
    for g in scenario.topology.gateways:
        spec = scenario.gateway(g.name)
        result.impls[g.name] = spec.impl if spec else "none"
    say(f"starting topology {scenario.topology.name}")
    with Lab(scenario.topology, workdir=out, gateways=scenario.gateways,
             start_gateways=False) as lab:
        ctx = RunContext(scenario, lab, {}, result)
        captures = [lab.network.start_capture(t, out / f"{t.replace(':', '-')}.pcap")
                    for t in scenario.captures]
        try:
            steps = list(scenario.steps)
            if not any(s.kind in ("start", "start_gateway") for s in steps):
                steps.insert(0, Step("start", {}, 0))  # none says which to start: all
            for number, step in enumerate(steps, start=1):
                line = f"step {number}/{len(steps)}: {step.describe()}"
                try:
                    outcome = _run_step(lab, step)
                except IpsecLabError as exc:
                    outcome = f"FAILED: {exc}"
                    result.checks.append(CheckResult(f"step {step.describe()}", FAIL, str(exc)))
                    if step.kind in ("start", "start_gateway"):
                        # Traffic without its gateways would cross the WAN in the clear.
                        result.steps.append(f"{line}: {outcome}")
                        say(result.steps[-1] + "; the remaining steps are skipped")
                        break
                result.steps.append(f"{line}: {outcome}")
                say(result.steps[-1])
        finally:
            for cap in captures:
                ctx.pcaps[cap.name] = lab.network.stop_capture(cap)
                say(f"capture {cap.name}: {cap.summary or 'stopped'} -> {cap.path}")
        result.pcaps = dict(ctx.pcaps)
        if cli:
            lab.cli()
        for spec in scenario.checks:
            res = _judge(ctx, spec)
            result.checks.append(res)
            say(f"check {res.name}: {res.status} {res.detail}")
    (out / "result.txt").write_text(result.table() + "\n\n" + "\n".join(result.steps) + "\n")
    return result


def _run_step(lab: Lab, step: Step) -> str:
    a = step.args
    if step.kind == "start":
        lab.network.start_gateways()
        return "gateways started"
    if step.kind == "wait":
        time.sleep(a["seconds"])
        return "done"
    if step.kind == "ping":
        res = lab.ping(a["from"], a["to"], a["count"], a["interval"], a["pattern"])
        if a.get("lossless") and res.received < res.sent:
            raise IpsecLabError(f"{res.sent - res.received} of {res.sent} pings lost ({res})")
        return str(res)
    if step.kind == "iperf3":
        return str(lab.iperf3(a["from"], a["to"], a["udp"], a["seconds"], a["bandwidth"]))
    if step.kind == "start_gateway":
        lab.start_gateway(a["node"])
    elif step.kind == "stop_gateway":
        lab.stop_gateway(a["node"])
    elif step.kind == "restart_gateway":
        lab.restart_gateway(a["node"])
    return "done"


def _judge(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    fn = _CHECKS.get(spec.kind)
    if fn is None:
        return CheckResult(spec.name, SKIP, "no implementation registered for this check")
    try:
        return fn(ctx, spec)
    except IpsecLabError as exc:
        return CheckResult(spec.name, FAIL, str(exc))


def _plain_note(ctx: RunContext) -> str:
    plain = sorted(n for n, i in ctx.result.impls.items() if i == "none")
    if not plain:
        return ""
    return f"; {', '.join(plain)} run impl none (plain forwarding, no IPsec)"


def check_reachable(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    res = ctx.lab.ping(spec.args["from"], spec.args["to"], count=3)
    return CheckResult(spec.name, PASS if res.ok else FAIL, str(res))


def check_wan_only_ipsec(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    """Every IP packet on the link is ESP, AH or UDP 500/4500 (IKE, RFC 3948 encapsulation).

    ARP, IGMP and IPv6 neighbour discovery / MLD are link housekeeping and are not counted.
    """
    link = spec.args["link"]
    ip = [f for f in frames(ctx.pcaps[link]) if f.kind in ("ipv4", "ipv6") and not f.link_control]
    if not ip:
        return CheckResult(spec.name, FAIL, f"no IP packets captured on {link}: nothing to judge")
    bad = [f for f in ip if not f.is_ipsec]
    if not bad:
        return CheckResult(spec.name, PASS, f"all {len(ip)} IP packets are ESP, AH or IKE")
    return CheckResult(spec.name, FAIL, f"{len(bad)} of {len(ip)} IP packets are not IPsec, "
                       f"e.g. {bad[0].describe()}{_plain_note(ctx)}")


def check_no_plaintext(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    link, pattern = spec.args["link"], spec.args["pattern"]
    needle = pattern.encode()
    captured = frames(ctx.pcaps[link])
    hits = sum(1 for f in captured if needle in f.data)
    if not captured:
        return CheckResult(spec.name, FAIL, f"nothing captured on {link}: nothing to judge")
    if hits:
        return CheckResult(spec.name, FAIL, f"'{pattern}' readable in {hits} of {len(captured)} "
                           f"frames{_plain_note(ctx)}")
    return CheckResult(spec.name, PASS, f"absent from all {len(captured)} frames")


def check_ike_sas(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    """At least ``min`` IKE SAs were begun on the link: IKE_SA_INIT requests with different
    initiator SPIs (RFC 7296 §1.2; a rekey makes its IKE SA in CREATE_CHILD_SA instead)."""
    from ipseclab.capture.decode import KeyRing, decode_capture

    link, least = spec.args["link"], spec.args["min"]
    begun = {f.ike.spi_i for f in decode_capture(ctx.pcaps[link], KeyRing())
             if f.proto == "ike" and f.exchange == "IKE_SA_INIT" and not f.response
             and f.ike is not None}
    status = PASS if len(begun) >= least else FAIL
    return CheckResult(spec.name, status, f"{len(begun)} IKE SAs begun on {link}"
                       f" (IKE_SA_INIT with {len(begun)} initiator SPIs)")


def check_no_weak_ike(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    """``to``'s IKE responder accepts no algorithm RFC 8247 says SHOULD NOT or MUST NOT be
    used: ``ipseclab probe`` run in ``from`` (stateless questions only, ``--no-full``)."""
    topology = ctx.lab.topology
    node, dst = topology.owner(spec.args["from"]), spec.args["to"]
    address = (facing_address(topology, node, dst) if topology.owner(dst) == dst
               else ctx.lab.address(dst))
    out = ctx.lab.cmd(node, sys.executable, "-m", "ipseclab", "probe", address, "--json",
                      "--no-full", "--timeout", "0.5")
    try:
        report = json.loads(out[out.index("{"):])
    except ValueError:
        return CheckResult(spec.name, FAIL, f"probe of {address} failed: {out.strip()[-200:]}")
    answers = report["answers"]
    if report["stopped"] and not any(a["verdict"] != "no answer" for a in answers):
        return CheckResult(spec.name, FAIL, f"no IKE responder answered at {address}")
    weak = [f"{a['keyword']} ({a['rfc8247']})" for a in answers if a["weak"]]
    accepted = [a["keyword"] for a in answers if a["verdict"] == "accepted"]
    if weak:
        return CheckResult(spec.name, FAIL, f"{address} accepts {', '.join(weak)}")
    return CheckResult(spec.name, PASS, f"{address} accepts only {', '.join(accepted)}")


def facing_address(topology: Topology, node: str, target: str) -> str:
    """The address of node ``target`` on a segment ``node`` shares with it (``gw2``'s WAN
    address as seen from ``gw1``), else its first address."""
    mine = {i.segment for i in topology.node(node).interfaces}
    for intf in topology.node(target).interfaces:
        if intf.segment in mine and intf.addresses:
            return str(intf.addresses[0].ip)
    return str(topology.node(target).primary_address.ip)


def check_sa_counters(ctx: RunContext, spec: CheckSpec) -> CheckResult:
    """Placeholder until gateways report SA counters; register_check('sa_counters', fn)."""
    return CheckResult(spec.name, SKIP, "no gateway reports SA counters yet")


register_check("reachable", check_reachable)
register_check("wan_only_ipsec", check_wan_only_ipsec)
register_check("no_plaintext", check_no_plaintext)
register_check("sa_counters", check_sa_counters)
register_check("ike_sas", check_ike_sas)
register_check("no_weak_ike", check_no_weak_ike)

