"""The handshake benchmark runs, and the initiator's CERTREQ is where RFC 7296 §3.7 puts it.

No root. The CERTREQ check comes from interop: strongSwan refuses an IKE_SA_INIT request that
carries a CERTREQ ("payload type CERTREQ was not encrypted"), so ours must send it in the
IKE_AUTH request (and the responder in its IKE_SA_INIT response).
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from ipseclab.ike import testpki
from ipseclab.ike.certs import load_certificate, load_private_key
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import ExchangeType
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.message import parse_message
from ipseclab.ike.payloads import CertificateRequest

ROOT = Path(__file__).resolve().parents[1]
NOW = 1.8e9  # 2027, inside the lab PKI's validity


def test_benchmark_prints_rates_and_ratio(capsys) -> None:
    spec = importlib.util.spec_from_file_location("ike_handshake",
                                                  ROOT / "benchmarks" / "ike_handshake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(["--seconds", "0.2"])
    assert figures["handshakes_per_second"] > 10 and figures["crypto_per_second"] > 100
    assert 0 < figures["ratio"] < 1  # a handshake cannot cost less than its crypto
    assert "ratio (goal >= 0.5)" in capsys.readouterr().out


def test_initiator_sends_certreq_in_ike_auth_not_in_sa_init(tmp_path: Path) -> None:
    hosts = (testpki.HostSpec("moon", "ecdsa256", "C=CH, O=ipseclab, CN=moon",
                              ("moon.ipseclab.test",)),
             testpki.HostSpec("sun", "ecdsa256", "C=CH, O=ipseclab, CN=sun",
                              ("sun.ipseclab.test",)))
    pki = testpki.make_lab_pki(tmp_path, hosts, ca_key="ecdsa256")

    def conn(stem: str, local: str, remote: str) -> IkeConfig:
        return IkeConfig(
            "c", local_addrs=[local], remote_addrs=[remote], local_id=f"{stem}.ipseclab.test",
            proposals="aes128gcm16-prfsha256-x25519", local_auth="pubkey",
            remote_auth="pubkey", local_certs=[load_certificate(pki.certs[stem])],
            private_key=load_private_key(pki.keys[stem]), remote_cacerts=[pki.ca_cert],
            children=[ChildConfig("net", local_ts=["10.1.0.0/24"], remote_ts=["10.2.0.0/24"],
                                  esp_proposals="aes128gcm16")])

    i = IkeEngine(conn("moon", "192.0.2.1", "192.0.2.2"), rng=random.Random(1).randbytes)
    r = IkeEngine(conn("sun", "192.0.2.2", "192.0.2.1"), rng=random.Random(2).randbytes)
    i.initiate("c", NOW)
    seen = []
    for _ in range(4):
        for data, src, dst in i.datagrams_to_send():
            seen.append(("i", data))
            r.receive_datagram(data, src, dst, NOW)
        for data, src, dst in r.datagrams_to_send():
            seen.append(("r", data))
            i.receive_datagram(data, src, dst, NOW)
    init_request = parse_message(seen[0][1])
    init_response = parse_message(seen[1][1])
    assert init_request.exchange_type == ExchangeType.IKE_SA_INIT
    assert init_request.find(CertificateRequest) is None
    assert init_response.find(CertificateRequest) is not None
    assert [who for who, _ in seen] == ["i", "r", "i", "r"]  # IKE_AUTH went through
    assert not i.internal_errors and not r.internal_errors
    assert len(i.ike_sas) == 1 and i.ike_sas[0].state.name == "ESTABLISHED"
