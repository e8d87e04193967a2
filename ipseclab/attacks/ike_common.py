"""What the IKE attacks share: labs of IKEv2 gateways, and an attacker's key arithmetic.

The IKE attacks run the ``on-path-attacker`` topology with ``impl: ipseclab`` gateways
configured by ``topologies/attacks/<attack>/<config>/<node>.swanctl.conf`` (``ipseclab
gateway --swanctl``). An attacker who learns g^ir (weak-dh, unchecked-dh) or who *is* the
responder (weak-psk) computes everything else the way the peers do (RFC 7296):

* SKEYSEED = prf(Ni | Nr, g^ir) and the seven SK_* keys from prf+ (§2.14),
* the SK payload of IKE_AUTH opened with SK_ei/SK_er (§3.14),
* KEYMAT = prf+(SK_d, Ni | Nr) for the first child SA, cut as §2.17 says, and with it the
  ESP traffic of that child SA.
"""

from __future__ import annotations

import contextlib
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

__all__ = ["SaInit", "auth_exchange", "child_sas", "decrypt_esp", "ike_lab", "ike_messages",
           "open_sk", "sa_keys", "swanctl_specs"]


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
