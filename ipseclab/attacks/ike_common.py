"""What the IKE attacks share: labs of IKEv2 gateways, and an attacker's key arithmetic.

The IKE attacks run the ``on-path-attacker`` topology with ``impl: ipseclab`` gateways
configured by ``topologies/attacks/<attack>/<config>/<node>.swanctl.conf`` (``ipseclab
gateway --swanctl``). An attacker who learns g^ir (weak-dh, unchecked-dh) or who *is* the
responder (weak-psk) computes everything else the way the peers do (RFC 7296):

* SKEYSEED = prf(Ni | Nr, g^ir) and the seven SK_* keys from prf+ (§2.14),
* the SK payload of IKE_AUTH opened with SK_ei/SK_er (§3.14),
* KEYMAT = prf+(SK_d, Ni | Nr) for the first child SA, cut as §2.17 says, and with it the
  ESP traffic of that child SA.

An attacker who rewrites IKE in flight (unchecked-dh, downgrade) uses :func:`relay_attempt`:
mallory's relay (:mod:`ipseclab.attacks.ike_relay`) applies a rewrite function of the attack
module to the datagrams between the lab's gateways while gw1 initiates, and the gateways'
logs and control sockets say what came of it. :func:`run_pair` runs the same rewrite
functions between two IKE engines in memory: the tests' cheap check without root.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import TOPOLOGY, config_dir
from ipseclab.crypto import kdf
from ipseclab.crypto.proposals import Proposal
from ipseclab.ike import negotiation
from ipseclab.ike.constants import ExchangeType, ProtocolId
from ipseclab.ike.keys import IkeSuite, child_keys, ike_sa_keys
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payload_base import Payload
from ipseclab.ike.payloads import KeyExchange, Nonce, SecurityAssociation
from ipseclab.ike.sk import SkCipher
from ipseclab.ipsec import esp
from ipseclab.ipsec.sa import SecurityAssociation as EspSa
from ipseclab.ipsec.udpencap import NON_ESP_MARKER

__all__ = ["Attempt", "SaInit", "auth_exchange", "child_sas", "ctl", "decrypt_esp", "ike_lab",
           "ike_messages", "open_sk", "register_module_launcher", "relay_attempt", "sa_keys",
           "swanctl_specs"]

GW1, GW2 = "192.0.2.1", "198.51.100.2"  # the gateways' WAN addresses in on-path-attacker


def swanctl_specs(directory: Path, impl: str = "ipseclab") -> dict:
    """``impl`` gateways for every ``<node>.swanctl.conf`` in ``directory``."""
    from ipseclab.lab.topology import GatewaySpec

    return {p.name.split(".")[0]: GatewaySpec(impl, (p,))
            for p in sorted(directory.glob("*.swanctl.conf"))}


@contextlib.contextmanager
def ike_lab(attack: str, config: str, workdir: Path | None = None, impl: str = "ipseclab",
            start_gateways: bool = True) -> Iterator[Any]:
    """A running ``on-path-attacker`` lab whose gateways run IKEv2 with the attack's config."""
    import ipseclab.lab.ipseclab_gateway  # noqa: F401  registers impl ipseclab
    from ipseclab.lab.api import Lab

    with Lab(TOPOLOGY, workdir=workdir, gateways=swanctl_specs(config_dir(attack, config), impl),
             start_gateways=start_gateways) as lab:
        yield lab


def register_module_launcher(impl: str, module: str) -> None:
    """``impl``: the ipseclab gateway, started as ``python -m MODULE gateway ...``.

    The attack module's ``gateway`` entry point changes something in its own process first
    (registers a toy group, drops the RFC 6989 checks) and logs a warning: the insecure
    switch lives in the attack library only, never in the gateway.
    """
    from ipseclab.lab.ipseclab_gateway import IpseclabLauncher
    from ipseclab.lab.network import register_launcher

    class _Node:
        def __init__(self, node: Any) -> None:
            self._node = node

        def __getattr__(self, name: str) -> Any:
            return getattr(self._node, name)

        def popen(self, args: list[str], *rest: Any, **kw: Any) -> Any:
            args = list(args)
            args[args.index("-m") + 1] = module
            return self._node.popen(args, *rest, **kw)

    class ModuleLauncher(IpseclabLauncher):
        def start(self, node: Any, gateway: Any, workdir: Path) -> Any:
            return super().start(_Node(node), gateway, workdir)

    register_launcher(impl, ModuleLauncher)


def ike_messages(packets: list[str]) -> list[bytes]:
    """The IKE messages in sniffed IPv4 packets (hex): UDP 500, or 4500 without the marker."""
    out = []
    for text in packets:
        packet = bytes.fromhex(text)
        if len(packet) < 28 or packet[9] != 17:
            continue
        ihl = (packet[0] & 0x0F) * 4
        ports = (int.from_bytes(packet[ihl:ihl + 2], "big"),
                 int.from_bytes(packet[ihl + 2:ihl + 4], "big"))
        payload = packet[ihl + 8:]
        if 4500 in ports:
            if not payload.startswith(NON_ESP_MARKER):
                continue  # ESP in UDP
            payload = payload[len(NON_ESP_MARKER):]
        elif 500 not in ports:
            continue
        out.append(payload)
    return out


@dataclass
class SaInit:
    """The public values of one IKE_SA_INIT exchange, as anyone on the path sees them."""

    request: bytes
    response: bytes
    spi_i: bytes
    spi_r: bytes
    ni: bytes
    nr: bytes
    ke_i: KeyExchange
    ke_r: KeyExchange
    proposal: Proposal  # the responder's choice

    @classmethod
    def from_messages(cls, messages: list[bytes]) -> SaInit | None:
        """The first completed IKE_SA_INIT among ``messages`` (both directions, any order)."""
        parsed = [(m, parse_message(m)) for m in messages]
        for data, msg in parsed:
            if msg.exchange_type != ExchangeType.IKE_SA_INIT or not msg.is_response:
                continue
            if msg.find(KeyExchange) is None:
                continue  # INVALID_KE_PAYLOAD, COOKIE, NO_PROPOSAL_CHOSEN
            request = next((d for d, m in parsed if m.exchange_type == ExchangeType.IKE_SA_INIT
                            and not m.is_response and m.spi_i == msg.spi_i
                            and m.find(KeyExchange) is not None
                            and m.find(KeyExchange).group == msg.find(KeyExchange).group), None)
            if request is None:
                continue
            req = parse_message(request)
            chosen = negotiation.read_proposals(msg.find(SecurityAssociation), ProtocolId.IKE)
            return cls(request, data, msg.spi_i, msg.spi_r, req.find(Nonce).data,
                       msg.find(Nonce).data, req.find(KeyExchange), msg.find(KeyExchange),
                       chosen[0][1])
        return None

    @property
    def suite(self) -> IkeSuite:
        p = self.proposal
        return IkeSuite(p.encryption[0], p.integrity[0] if p.integrity else None, p.prf[0])


def auth_exchange(messages: list[bytes], init: SaInit) -> tuple[bytes | None, bytes | None]:
    """The IKE_AUTH request and response of the IKE SA ``init`` started (None if missing)."""
    request = response = None
    for data in messages:
        msg = parse_message(data)
        if (msg.exchange_type == ExchangeType.IKE_AUTH and msg.spi_i == init.spi_i
                and msg.spi_r == init.spi_r):
            if msg.is_response:
                response = response or data
            else:
                request = request or data
    return request, response


def sa_keys(init: SaInit, g_ir: bytes) -> kdf.IkeKeys:
    """SK_d, SK_ai/ar, SK_ei/er, SK_pi/pr from g^ir and the public values (§2.14)."""
    return ike_sa_keys(init.suite, init.ni, init.nr, g_ir, init.spi_i, init.spi_r)


def open_sk(data: bytes, init: SaInit, keys: kdf.IkeKeys) -> tuple[Message, list[Payload]]:
    """The inner payloads of an encrypted message of this IKE SA (raises if the keys are
    wrong: AuthenticationFailed from the ICV or AEAD tag)."""
    message = parse_message(data)
    suite = init.suite
    ek, ak = (keys.SK_ei, keys.SK_ai) if message.is_initiator else (keys.SK_er, keys.SK_ar)
    return message, SkCipher(suite.encryption, ek, suite.integrity, ak).open(data, message)


def child_sas(init: SaInit, keys: kdf.IkeKeys, auth_request: list[Payload],
              auth_response: list[Payload], initiator: str, responder: str
              ) -> tuple[EspSa, EspSa]:
    """The first child SA's two ESP SAs (initiator -> responder first), from KEYMAT.

    SAi2 carries the SPI the initiator receives on, SAr2 the responder's SPI and the
    chosen algorithms; the keys are KEYMAT = prf+(SK_d, Ni | Nr) (§2.17).
    """
    sa_i = next(p for p in auth_request if isinstance(p, SecurityAssociation))
    sa_r = next(p for p in auth_response if isinstance(p, SecurityAssociation))
    spi_r = int.from_bytes(sa_r.proposals[0].spi, "big")
    chosen = negotiation.read_proposals(sa_r, ProtocolId.ESP)[0][1]
    number = sa_r.proposals[0].number
    spi_i = int.from_bytes(next(p.spi for p in sa_i.proposals if p.number == number), "big")
    enc = chosen.encryption[0]
    integ = chosen.integrity[0] if chosen.integrity else None
    k = child_keys(init.suite.prf, keys.SK_d, init.ni, init.nr, enc, integ)

    def one(spi: int, src: str, dst: str, ek: bytes, ak: bytes) -> EspSa:
        return EspSa(spi=spi, src=src, dst=dst, mode="tunnel", encryption=enc, encryption_key=ek,
                     integrity=integ, integrity_key=ak, replay_window=0, insecure=True)

    return (one(spi_r, initiator, responder, k.encr_i, k.integ_i),
            one(spi_i, responder, initiator, k.encr_r, k.integ_r))


def decrypt_esp(sa: EspSa, packets: list[str]) -> list[bytes]:
    """The inner packets of those sniffed ESP packets (hex) that ``sa`` opens."""
    out = []
    for text in packets:
        packet = bytes.fromhex(text)
        if len(packet) < 28 or int.from_bytes(packet[20:24], "big") != sa.spi:
            continue
        result = esp.decapsulate(sa, packet)
        if result.inner is not None:
            out.append(result.inner)
    return out


# --- mallory rewriting IKE between the lab's gateways ---------------------------------------------


def ctl(node: str, command: str, **args: Any) -> Any:
    """One request to the control socket of ``node``'s ipseclab gateway."""
    from ipseclab.drivers.cli_gateway import request_gateway
    from ipseclab.errors import IpsecLabError
    from ipseclab.lab.ipseclab_gateway import control_socket

    path = control_socket(node)
    if path is None:
        raise IpsecLabError(f"no ipseclab gateway is running on {node}")
    return request_gateway(path, {"command": command, **args}, timeout=5.0)


@dataclass
class Attempt:
    """One IKE exchange through mallory's relay: the wire, and what the gateways say."""

    datagrams: list[dict[str, Any]]  # the relay's record: from, received, sent, replied
    logs: dict[str, list[str]]  # new warning/info lines of each gateway's log
    ike_sas: dict[str, list[dict[str, Any]]]  # ctl list-ike-sas of each gateway
    stats: dict[str, dict[str, Any]]  # ctl stats["ike"] of each gateway

    def delivered(self) -> list[bytes]:
        """Every IKE message as a gateway received it (after mallory)."""
        return [bytes.fromhex(h) for d in self.datagrams for h in d["sent"] + d["replied"]]

    def lines(self, *words: str) -> list[str]:
        """``node: line`` for the log lines holding any of ``words``."""
        return [f"{node}: {_LOG_PREFIX.sub('', line)}" for node, lines in self.logs.items()
                for line in lines if any(w in line for w in words)]


_LOG_PREFIX = re.compile(r"^[\d-]+ [\d:,]+ \S+ [A-Z]+: ")  # logging's time, logger, level


def _log(lab: Any, node: str) -> Path:
    return Path(lab.workdir) / node / "gateway.log"


def relay_attempt(lab: Any, rewrite: str, done: Callable[[dict[str, list[str]]], bool],
                  seconds: float = 6.0, connection: str = "site") -> Attempt:
    """gw1 initiates ``connection`` while mallory's relay applies ``rewrite`` (see
    :mod:`ipseclab.attacks.ike_relay`); ends when ``done(new log lines)`` or after
    ``seconds``. The relay's iptables rules are gone again when this returns."""
    import time

    from ipseclab.attacks.common import NodeTool

    nodes = ("gw1", "gw2")
    offsets = {n: _log(lab, n).stat().st_size if _log(lab, n).exists() else 0 for n in nodes}

    def new_lines() -> dict[str, list[str]]:
        out = {}
        for n in nodes:
            with open(_log(lab, n), "rb") as f:
                f.seek(offsets[n])
                out[n] = f.read().decode(errors="replace").splitlines()
        return out

    tool = NodeTool(lab, "mallory", "ike_relay", GW1, GW2, f"{seconds + 2:g}", rewrite,
                    timeout=seconds + 5)
    try:
        ctl("gw1", "initiate", target=connection)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not done(new_lines()):
            time.sleep(0.1)
        time.sleep(0.2)  # the last answer in flight
        record = tool.finish()
    finally:
        tool.stop()
    return Attempt(record.get("datagrams", []), new_lines(),
                   {n: ctl(n, "list-ike-sas") for n in nodes},
                   {n: ctl(n, "stats").get("ike", {}) for n in nodes})


# --- two IKE engines joined in memory, with an attacker on the wire ------------------------------

Tamper = Callable[[bytes, str], list]


@dataclass
class Wire:
    """What crossed the in-memory wire (after the attacker) and what each side reported."""

    messages: list[tuple[str, bytes]]  # (sender, message as delivered)
    events: dict[str, list[Any]]
    engines: dict[str, Any]


def engine_pair(attack: str, config: str) -> dict[str, Any]:
    """gw1 and gw2 as :class:`IkeEngine` objects, from ``<node>.swanctl.conf`` of ``config``."""
    from ipseclab.config.swanctl import load_swanctl
    from ipseclab.ike.engine import IkeEngine

    out = {}
    for node, path in ((n, s.config[0]) for n, s in swanctl_specs(config_dir(attack,
                                                                             config)).items()):
        loaded = load_swanctl(path)
        out[node] = IkeEngine(list(loaded.connections.values()), cookie_threshold=None,
                              retransmit_tries=1)
    return out


def run_pair(engines: dict[str, Any], tamper: Tamper | None = None, connection: str = "site",
             now: float = 1000.0, rounds: int = 12) -> Wire:
    """gw1 initiates ``connection``; messages go back and forth through ``tamper(data,
    sender) -> [data to deliver, ...]`` (none: drop; the attacker may also answer, with a
    message addressed back to the sender: ``("reply", data)``) until nothing moves."""
    wire: list[tuple[str, bytes]] = []
    addresses = {"gw1": ("192.0.2.1", 500), "gw2": ("198.51.100.2", 500)}
    other = {"gw1": "gw2", "gw2": "gw1"}
    engines["gw1"].initiate(connection, now)
    for _ in range(rounds):
        moved = False
        for sender in ("gw1", "gw2"):
            for data, _, _ in engines[sender].datagrams_to_send():
                moved = True
                delivered = tamper(data, sender) if tamper is not None else [data]
                for item in delivered:
                    to = other[sender]
                    if isinstance(item, tuple):  # the attacker answers the sender itself
                        to, item = sender, item[1]
                    wire.append((other[to], item))
                    engines[to].receive_datagram(item, addresses[other[to]], addresses[to], now)
        now += 0.01
        if not moved:
            break
    events: dict[str, list[Any]] = {}
    for node, engine in engines.items():
        events[node] = []
        while (ev := engine.next_event()) is not None:
            events[node].append(ev)
    return Wire(wire, events, engines)
