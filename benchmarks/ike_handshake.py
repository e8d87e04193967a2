"""In-memory IKE_SA_INIT + IKE_AUTH (PSK, aes128gcm16-prfsha256-x25519) beside its bare crypto.

    .venv/bin/python benchmarks/ike_handshake.py [--seconds 2]

One handshake is both sides of one negotiation: our initiator and our responder exchange
the four messages of IKE_SA_INIT and IKE_AUTH in memory (with the first child SA), no sockets.
Beside it, the crypto such a handshake cannot avoid, done with ``cryptography`` directly:

* X25519: two key generations and two exchanges (one each side, RFC 7296 §2.14);
* HMAC-SHA-256 for prfsha256: per side SKEYSEED and prf+ for SK_d, SK_ei/er, SK_pi/pr
  (136 bytes, 5 blocks), two AUTH values (ours to send, the peer's to check, §2.15: each
  prf(prf(PSK, "Key Pad for IKEv2"), <octets | prf(SK_p, ID)>), three HMACs), KEYMAT for
  the child SA (40 bytes, 2 blocks) (§2.17);
* AES-GCM-128 (16-byte ICV) for the SK payloads of IKE_AUTH: each of the 2 messages sealed
  once and opened once (§3.14, RFC 5282).

The ratio bare crypto / handshake is the share of a handshake's time that is crypto;
the goal is >= 0.5. Prints the figures side by side; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from ipseclab.ike import events  # noqa: E402
from ipseclab.ike.config import ChildConfig, IkeConfig  # noqa: E402
from ipseclab.ike.engine import IkeEngine  # noqa: E402

PROPOSAL = "aes128gcm16-prfsha256-x25519"
I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"
AUTH_MSG_SIZE = 300  # about the size of an IKE_AUTH body with PSK, IDs, SA, TSi/TSr


def configs() -> tuple[IkeConfig, IkeConfig]:
    child = dict(mode="tunnel", esp_proposals="aes128gcm16")
    ci = IkeConfig("site", local_addrs=[I_ADDR], remote_addrs=[R_ADDR], proposals=PROPOSAL,
                   local_id="@moon.example", remote_id="@sun.example", psk=b"bench secret",
                   children=[ChildConfig("net", local_ts=["10.1.0.0/24"],
                                         remote_ts=["10.2.0.0/24"], **child)])
    cr = IkeConfig("site", local_addrs=[R_ADDR], remote_addrs=["%any"], proposals=PROPOSAL,
                   local_id="@sun.example", remote_id="@moon.example", psk=b"bench secret",
                   children=[ChildConfig("net", local_ts=["10.2.0.0/24"],
                                         remote_ts=["10.1.0.0/24"], **child)])
    return ci, cr


def handshake(initiator: IkeEngine, responder: IkeEngine, now: float) -> None:
    """One full IKE_SA_INIT + IKE_AUTH; raises if it did not establish the child SA."""
    initiator.initiate("site", now)
    for _ in range(4):
        for data, src, dst in initiator.datagrams_to_send():
            responder.receive_datagram(data, src, dst, now)
        for data, src, dst in responder.datagrams_to_send():
            initiator.receive_datagram(data, src, dst, now)
    up = 0
    for engine in (initiator, responder):
        while (event := engine.next_event()) is not None:
            up += isinstance(event, events.ChildSaEstablished)
    if up != 2:
        raise RuntimeError("the handshake did not establish a child SA on both sides")


def forget(engine: IkeEngine) -> None:
    """Drop the engine's SAs without an exchange, so thousands of runs do not pile up."""
    engine._sas.clear()
    engine._half_open.clear()
    engine._out.clear()
    engine._events.clear()


def bench_handshakes(seconds: float) -> tuple[float, int]:
    ci, cr = configs()
    i = IkeEngine(ci, cookie_threshold=None)
    r = IkeEngine(cr, cookie_threshold=None)
    handshake(i, r, 0.0)  # warm-up (imports, caches)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        handshake(i, r, float(n))
        n += 1
        if n % 64 == 0:
            forget(i)
            forget(r)
    return n / elapsed, n


def prf_plus(key: bytes, seed: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(key, block + seed + bytes([counter]), hashlib.sha256)
        out += block
        counter += 1
    return out[:length]


def bare_crypto_once(psk: bytes, message: bytes) -> None:
    """The crypto of one handshake, both sides, done with ``cryptography``/hmac directly."""
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    shared_a = a.exchange(b.public_key())
    shared_b = b.exchange(a.public_key())
    nonces = os.urandom(64)
    spis = os.urandom(16)
    for shared in (shared_a, shared_b):
        skeyseed = hmac.digest(nonces, shared, hashlib.sha256)
        keys = prf_plus(skeyseed, nonces + spis, 136)
        sk_d, sk_ei, sk_pi = keys[:32], keys[32:52], keys[72:104]
        for _ in range(2):  # our AUTH, and the peer's to check
            pad = hmac.digest(psk, b"Key Pad for IKEv2", hashlib.sha256)
            macid = hmac.digest(sk_pi, b"\x02\x00\x00\x00moon.example", hashlib.sha256)
            hmac.digest(pad, message + nonces + macid, hashlib.sha256)
        prf_plus(sk_d, nonces, 40)
    gcm = AESGCM(sk_ei[:16])
    for _ in range(2):  # IKE_AUTH request and response: sealed once, opened once
        iv = os.urandom(8)
        sealed = gcm.encrypt(sk_ei[16:] + iv, message, message[:28])
        gcm.decrypt(sk_ei[16:] + iv, sealed, message[:28])


def bench_crypto(seconds: float) -> float:
    psk, message = b"bench secret", bytes(AUTH_MSG_SIZE)
    bare_crypto_once(psk, message)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        bare_crypto_once(psk, message)
        n += 1
    return n / elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--profile", action="store_true", help="cProfile the handshakes")
    args = parser.parse_args(argv)
    random.seed(0)
    if args.profile:
        import cProfile
        import pstats

        with cProfile.Profile() as prof:
            bench_handshakes(args.seconds)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    hs, n = bench_handshakes(args.seconds)
    crypto = bench_crypto(args.seconds)
    ratio = hs / crypto
    print(f"{'IKE_SA_INIT + IKE_AUTH (both sides, in memory)':<48} {hs:9.1f} /s  ({n} runs)")
    print(f"{'bare crypto of one handshake (cryptography)':<48} {crypto:9.1f} /s")
    print(f"{'ratio (goal >= 0.5)':<48} {ratio:9.2f}")
    return {"handshakes_per_second": hs, "crypto_per_second": crypto, "ratio": ratio}


if __name__ == "__main__":
    main()
