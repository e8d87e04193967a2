"""weak-dh: a Diffie-Hellman group small enough that a passive observer solves it.

IKEv2's keys all hang from g^ir (RFC 7296 §2.14: SKEYSEED = prf(Ni | Nr, g^ir)); the
nonces, SPIs and public values g^i, g^r cross the wire in clear in IKE_SA_INIT. Whoever
computes the discrete log of g^i computes g^ir = (g^r)^i, then SKEYSEED, SK_e*, and the
KEYMAT of the child SAs (§2.17): the IKE_AUTH exchange (identities, AUTH, traffic
selectors) and the ESP traffic open up, after the fact, from a capture. Logjam (Adrian et
al., "Imperfect Forward Secrecy: How Diffie-Hellman Fails in Practice", CCS 2015) did
this for 512-bit groups and estimated it for 768 and 1024 bits.

The weak configuration names ``modp40toy``: a 40-bit safe prime, IANA private-use ID
1040 (RFC 7296 §3.3.2), marked ``insecure``. It is registered only by this module, and only
a gateway started as ``python -m ipseclab.attacks.weak_dh gateway ...`` (the lab's
``impl: ipseclab-toydh``, the insecure switch) knows it; that gateway logs a warning. The
solve is baby-step giant-step (:mod:`ipseclab.attacks.dlog`), about a second in Python.
Logjam's point: the sieve's precomputation is per *prime*; after it, each connection's log
is cheap, and everyone used the same few primes. The recommended configuration uses
x25519, where the best known attack (Pollard rho) needs about 2^126 group operations:
:func:`cost_plot` and the evidence give the numbers.

The attack targets only the lab's own hosts inside the topology's namespaces: mallory
records what it forwards; it sends nothing.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import (
    AttackResult,
    NodeTool,
    check_config,
    send_udp,
    settle,
)
from ipseclab.attacks.dlog import bsgs
from ipseclab.attacks.ike_common import (
    SaInit,
    auth_exchange,
    child_sas,
    decrypt_esp,
    ike_lab,
    ike_messages,
    open_sk,
    sa_keys,
)
from ipseclab.crypto import dh
from ipseclab.crypto.dh import ModpGroup
from ipseclab.ike.payloads import Identification

NAME = "weak-dh"
WEAK = "weak"  # topologies/attacks/weak-dh/weak: modp40toy (impl ipseclab-toydh)
RECOMMENDED = "recommended"  # x25519
PORT = 9003
SECRET = b"weak-dh: the quarterly numbers are 4, 8, 15, 16, 23, 42"

TOY_KEYWORD = "modp40toy"
TOY_ID = 1040  # RFC 7296 §3.3.2: 1024-65535 are for private use
TOY_P = 0xFFFFFFFE4B  # 2^40 - 437, a safe prime: p = 2q + 1 with q prime
TOY_Q = (TOY_P - 1) // 2
TOY_G = 4  # a square, so of order q
TOY_GROUP = ModpGroup(TOY_KEYWORD, TOY_ID, TOY_P, TOY_G, TOY_Q, insecure=True,
                      rfc="none: a 40-bit toy group of the ipseclab attack lab")
TOY_IMPL = "ipseclab-toydh"

log = logging.getLogger(__name__)


def enable_toy_group() -> ModpGroup:
    """Register ``modp40toy`` in this process (idempotent). Lab only: it is insecure."""
    if dh.DH_GROUPS.get(TOY_KEYWORD) is not TOY_GROUP:
        dh.register(TOY_GROUP)
    return TOY_GROUP


# --- the attacker's arithmetic -----------------------------------------------------------


def solve(group: ModpGroup, public: bytes) -> tuple[int | None, float]:
    """The private exponent behind ``public`` (the KE data), and the seconds it took."""
    start = time.perf_counter()
    order = group.q if group.q is not None else group.p - 1
    x = bsgs(group.g, int.from_bytes(public, "big"), group.p, order)
    return x, time.perf_counter() - start


def shared_secret(group: ModpGroup, x: int, peer_public: bytes) -> bytes:
    """g^ir as §2.14 feeds it to SKEYSEED: (g^r)^i, left-padded to the length of p."""
    return pow(int.from_bytes(peer_public, "big"), x, group.p).to_bytes(group.public_size, "big")


# --- cost: measured and extrapolated ------------------------------------------------------

# Adrian et al. 2015, Table 2 (estimates, in core-years): number field sieve precomputation
# per prime (sieving + linear algebra) for 768-bit and 1024-bit primes. Rounded.
LOGJAM_PRECOMPUTATION_CORE_YEARS = {768: 36_500, 1024: 45_000_000}
SECONDS_PER_YEAR = 365.25 * 86400


def nfs_work(bits: int) -> float:
    """L_p[1/3, (64/9)^(1/3)]: the heuristic cost of the number field sieve (a shape only)."""
    ln_p = bits * math.log(2)
    return math.exp((64 / 9) ** (1 / 3) * ln_p ** (1 / 3) * math.log(ln_p) ** (2 / 3))


def estimates(toy_seconds: float, toy_bits: int = 40) -> dict[str, dict[str, float]]:
    """Seconds for one discrete log, by group: two honestly different extrapolations.

    ``generic``: the measured toy solve scaled by sqrt(q) (baby-step giant-step or Pollard
    rho, what works in any group: the only attack on x25519, with q about 2^252).
    ``nfs``: the number field sieve shape L_p[1/3, 1.923], anchored at Logjam's 768-bit
    precomputation estimate; it applies to MODP groups only and is a rough curve.
    """
    per_step = toy_seconds / math.sqrt(2 ** (toy_bits - 1))
    out: dict[str, dict[str, float]] = {}
    anchor = LOGJAM_PRECOMPUTATION_CORE_YEARS[768] * SECONDS_PER_YEAR / nfs_work(768)
    for name, bits, q_bits in (("modp768", 768, 767), ("modp1024", 1024, 1023),
                               ("modp2048", 2048, 2047), ("x25519", 256, 252)):
        row = {"generic": per_step * 2 ** (q_bits / 2)}
        if name.startswith("modp"):
            row["nfs"] = anchor * nfs_work(bits)
        out[name] = row
    return out


def cost_plot(path: Path | str, toy_seconds: float) -> Path:
    """A log-scale plot of the measured toy solve and the extrapolations (PNG)."""
    # A Figure of its own, without pyplot: no backend is switched, no window opened, and a
    # notebook shows it with display(fig).
    from matplotlib.figure import Figure

    est = estimates(toy_seconds)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    bits = list(range(40, 2049, 8))
    per_step = toy_seconds / math.sqrt(2 ** 39)
    ax.plot(bits, [math.log10(per_step * 2 ** ((b - 1) / 2)) for b in bits],
            label="generic (BSGS / Pollard rho): measured toy rate x sqrt(q)")
    anchor = LOGJAM_PRECOMPUTATION_CORE_YEARS[768] * SECONDS_PER_YEAR / nfs_work(768)
    nfs_bits = list(range(384, 2049, 32))
    ax.plot(nfs_bits, [math.log10(anchor * nfs_work(b)) for b in nfs_bits], "--",
            label="number field sieve L[1/3, 1.923], anchored at Logjam's 768-bit estimate")
    ax.scatter([40], [math.log10(toy_seconds)], color="red", zorder=3,
               label=f"measured: modp40toy in {toy_seconds:.2f} s")
    for bits_, years in LOGJAM_PRECOMPUTATION_CORE_YEARS.items():
        ax.scatter([bits_], [math.log10(years * SECONDS_PER_YEAR)], marker="x", color="k",
                   zorder=3)
    ax.axhline(math.log10(SECONDS_PER_YEAR * 1.38e10), color="grey", lw=0.5)
    ax.text(60, math.log10(SECONDS_PER_YEAR * 1.38e10) + 1, "age of the universe", fontsize=8)
    ax.axhline(math.log10(est["x25519"]["generic"]), color="green", lw=0.8, ls=":")
    ax.text(1200, math.log10(est["x25519"]["generic"]) + 1, "x25519 (Pollard rho, 2^126)",
            fontsize=8, color="green")
    ax.set_xlabel("bits of p (MODP group)")
    ax.set_ylabel("log10 core-seconds (x: Logjam estimates)")
    ax.set_title("Cost of one discrete log: a toy group vs. real ones (extrapolated)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


# --- the lab ---------------------------------------------------------------------------------


def _register_launcher() -> None:
    """``impl: ipseclab-toydh``: the ipseclab gateway, started through this module."""
    from ipseclab.lab.ipseclab_gateway import IpseclabLauncher
    from ipseclab.lab.network import register_launcher

    class _Node:
        def __init__(self, node: Any) -> None:
            self._node = node

        def __getattr__(self, name: str) -> Any:
            return getattr(self._node, name)

        def popen(self, args: list[str], *rest: Any, **kw: Any) -> Any:
            args = list(args)
            args[args.index("-m") + 1] = __name__  # python -m ipseclab.attacks.weak_dh gateway
            return self._node.popen(args, *rest, **kw)

    class ToyDhLauncher(IpseclabLauncher):
        def start(self, node: Any, gateway: Any, workdir: Path) -> Any:
            return super().start(_Node(node), gateway, workdir)

    register_launcher(TOY_IMPL, ToyDhLauncher)


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        plot: Path | str | None = None) -> AttackResult:
    """h1 sends one message to h2; mallory records the WAN and breaks what it recorded."""
    check_config(config)
    _register_launcher()
    enable_toy_group()  # to read the recorded proposals
    impl = TOY_IMPL if config == WEAK else "ipseclab"
    if plot is None and workdir is not None:
        plot = Path(workdir).parent / "weak-dh-cost.png"  # beside result.json of the CLI
    if lab is None:
        with ike_lab(NAME, config, workdir, impl=impl) as fresh:
            return _attack(fresh, config, plot)
    return _attack(lab, config, plot)


def _attack(lab: Any, config: str, plot: Path | str | None) -> AttackResult:
    listener = NodeTool(lab, "h2", "services", "listen", str(PORT), "8", "1")
    sniffers = [NodeTool(lab, "mallory", "mallory", "sniff", iface, proto, count, "8")
                for iface, proto, count in (("eth0", "17", "2"), ("eth1", "17", "2"),
                                            ("eth0", "50", "1"))]
    try:
        send_udp(lab, "h1", "h2", PORT, [SECRET])
        received = listener.result().get("messages", [])
        settle(0.2)
        ike = [p for s in sniffers[:2] for p in s.finish().get("packets", [])]
        esp_packets = sniffers[2].finish().get("packets", [])
    finally:
        listener.stop()
        for s in sniffers:
            s.stop()
    details: dict[str, Any] = {"delivered": len(received), "ike_messages": len(ike),
                               "esp_packets": len(esp_packets)}
    init = SaInit.from_messages(ike_messages(ike))
    if init is None:
        return AttackResult(NAME, config, False, "mallory saw no complete IKE_SA_INIT",
                            details=details)
    group = dh.dh_group_by_id(init.ke_i.group)
    details["group"] = str(group)
    if not isinstance(group, ModpGroup) or group.p.bit_length() > 64:
        est = estimates(1.0)
        years = est.get(str(group), est["x25519"])["generic"] / SECONDS_PER_YEAR
        evidence = (f"IKE_SA_INIT used {group} ({len(init.ke_i.data)}-octet public values):"
                    f" no discrete log to take here; the best known attack needs about"
                    f" 2^126 group operations, some {years:.0e} core-years at the rate of this"
                    " machine's toy solve. mallory cannot derive SKEYSEED; IKE_AUTH and ESP"
                    f" stay closed (h2 got {len(received)} message(s) through the tunnel)")
        return AttackResult(NAME, config, False, evidence, details=details)
    x, seconds = solve(group, init.ke_i.data)
    details["solve_seconds"] = round(seconds, 3)
    if x is None:
        return AttackResult(NAME, config, False, "the discrete log has no solution",
                            details=details)
    g_ir = shared_secret(group, x, init.ke_r.data)
    keys = sa_keys(init, g_ir)
    request, response = auth_exchange(ike_messages(ike), init)
    if request is None or response is None:
        return AttackResult(NAME, config, False, "mallory saw no IKE_AUTH exchange",
                            details=details)
    _, inner_req = open_sk(request, init, keys)
    _, inner_resp = open_sk(response, init, keys)
    ids = list(dict.fromkeys(p.data for p in inner_req + inner_resp
                             if isinstance(p, Identification)))
    sa_out, _ = child_sas(init, keys, inner_req, inner_resp, "192.0.2.1", "198.51.100.2")
    inner = decrypt_esp(sa_out, esp_packets)
    plaintext = inner[0][28:] if inner else b""
    details.update({"private_exponent": x, "g_ir": g_ir.hex(), "sk_ei": keys.SK_ei.hex(),
                    "identities": [i.decode(errors="replace") for i in ids],
                    "esp_plaintext": plaintext.decode(errors="replace")})
    if plaintext:
        est = estimates(seconds)
        details["estimates_seconds"] = est
        if plot is not None:
            details["plot"] = str(cost_plot(plot, seconds))
    ok = plaintext == SECRET
    nfs = "; ".join(f"{name} ~{row['nfs'] / SECONDS_PER_YEAR:.0e} core-years"
                    for name, row in estimates(seconds).items() if "nfs" in row)
    evidence = (f"{group}: mallory found gw1's private exponent x = {x} in {seconds:.2f} s"
                f" (baby-step giant-step), g^ir = {g_ir.hex()}, derived SKEYSEED and SK_*;"
                f" opened IKE_AUTH (identities {', '.join(details['identities'])}) and the"
                f" child SA's ESP: {plaintext.decode(errors='replace')!r}. Extrapolated"
                f" (number field sieve precomputation per prime, Logjam-anchored): {nfs}")
    return AttackResult(NAME, config, ok, evidence, details=details)


def gateway_main(argv: list[str]) -> int:
    """``ipseclab gateway ...`` with the toy group registered: the insecure switch."""
    enable_toy_group()
    logging.basicConfig()
    log.warning("DH group %s (ID %d, %d bits) is registered: INSECURE, attack lab only",
                TOY_KEYWORD, TOY_ID, TOY_P.bit_length())
    print(f"WARNING: insecure toy DH group {TOY_KEYWORD} enabled (attack lab only)",
          file=sys.stderr, flush=True)
    from ipseclab.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(gateway_main(sys.argv[1:]))
