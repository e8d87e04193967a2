"""Lesson 05, the IKEv2 handshake decoded: IKE_SA_INIT and IKE_AUTH between two in-memory
engines, the key log, and every key recomputed (RFC 7296 §1.2, §2.14, §2.15, §2.17).
"""

from __future__ import annotations

from .cells import SETUP, cleanup, code, md

CELLS = [
    md("""
    # 05: The IKEv2 handshake decoded

    **Learning goals.** After this lesson you can

    * name the four messages of IKE_SA_INIT and IKE_AUTH and the payloads each one carries
      (RFC 7296 §1.2), and say which of them an eavesdropper can read;
    * decrypt the IKE_AUTH messages of a capture with a Wireshark key log and draw the
      handshake as a ladder diagram;
    * recompute every key of the IKE SA from the capture, step by step: SKEYSEED and prf+
      (§2.14), the PSK's AUTH value (§2.15), and the child SA's KEYMAT (§2.17);
    * follow a packet from the handshake to the ESP SA it created.

    Two IKE engines talk to each other in memory: no root, no network, no daemons.
    """),
    SETUP,
    md("""
    ## Two peers in memory

    ipseclab's IKE engine is *sans-IO* (like aioquic): it takes datagrams and the time, and
    hands back datagrams to send and events. So two engines can negotiate by passing bytes
    to each other. `moon` (192.0.2.1) initiates, `sun` (192.0.2.2) responds. They share a
    pre-shared key (PSK) and agree on one proposal: AES-GCM with a 128-bit key and 16-byte
    ICV for the IKE SA's own messages (RFC 5282), HMAC-SHA-256 as PRF, and Curve25519 for
    Diffie-Hellman (RFC 8031); moon would have preferred AES-256, which sun does not take.
    The configuration is swanctl.conf's, written as Python.
    """),
    code("""
    import random

    from ipseclab.ike.config import ChildConfig, IkeConfig
    from ipseclab.ike.engine import IkeEngine

    MOON, SUN = "192.0.2.1", "192.0.2.2"
    PSK = b"correct horse battery staple"
    PROPOSAL = "aes128gcm16-prfsha256-x25519"

    # moon offers two IKE proposals and two ESP proposals, best first; sun accepts only
    # the second of each, so the handshake shows a choice being made.
    moon_config = IkeConfig(
        "site", local_addrs=[MOON], remote_addrs=[SUN],
        proposals="aes256gcm16-prfsha384-x25519, " + PROPOSAL,
        local_id="@moon.example", remote_id="@sun.example", psk=PSK,
        children=[ChildConfig("net", local_ts=["10.1.0.0/24"], remote_ts=["10.2.0.0/24"],
                              esp_proposals="aes256gcm16, aes128gcm16")])
    sun_config = IkeConfig(
        "site", local_addrs=[SUN], remote_addrs=["%any"], proposals=PROPOSAL,
        local_id="@sun.example", remote_id="@moon.example", psk=PSK,
        children=[ChildConfig("net", local_ts=["10.2.0.0/24"], remote_ts=["10.1.0.0/24"],
                              esp_proposals="aes128gcm16")])

    # Seeded randomness: the same SPIs, nonces and DH keys on every run.
    # A real gateway takes them from os.urandom.
    moon = IkeEngine(moon_config, rng=random.Random(7).randbytes)
    sun = IkeEngine(sun_config, rng=random.Random(8).randbytes)
    """),
    md("""
    `initiate` makes moon's first request. Then we carry every datagram across until both
    are quiet, and keep each one with its addresses, ports and the time, as a capture on the
    link between them would.
    """),
    code("""
    moon.initiate("site", now=0.0)
    wire = []  # (IKE message, (src addr, port), (dst addr, port), time)
    now = 0.0
    while True:
        moved = False
        for sender, receiver in ((moon, sun), (sun, moon)):
            for data, src, dst in sender.datagrams_to_send():
                now += 0.005  # 5 ms across the link
                wire.append((data, src, dst, now))
                receiver.receive_datagram(data, src, dst, now)
                moved = True
        if not moved:
            break

    for data, src, dst, t in wire:
        print(f"{t:.3f}s  {src[0]}:{src[1]} -> {dst[0]}:{dst[1]}  {len(data)} bytes")
    """),
    md("""
    Four messages: two exchanges of request and response. The engines also report what
    happened, as events: the IKE SA is up, and with it the first child SA (the pair of ESP
    SAs that will carry traffic).
    """),
    code("""
    from ipseclab.ike import events


    def drain(engine):
        out = []
        while (event := engine.next_event()) is not None:
            out.append(event)
        return out


    moon_events = drain(moon)
    for event in moon_events:
        print(type(event).__name__, "on IKE SA", event.ike_sa)
    ike_up = next(e for e in moon_events if isinstance(e, events.IkeSaEstablished))
    child_up = next(e for e in moon_events if isinstance(e, events.ChildSaEstablished))
    print("NAT detected:", ike_up.nat_detected)
    """),
    md("""
    ## A capture and a key log

    On the wire, each IKE message travels in a UDP datagram, port 500 (RFC 7296 §2). If the
    NAT_DETECTION notifies of IKE_SA_INIT had revealed a NAT, both peers would have moved to
    port 4500 for everything after it, with four zero bytes (the *non-ESP marker*) in front
    of each IKE message so that the receiver can tell IKE from UDP-encapsulated ESP
    (RFC 7296 §2.23, RFC 3948 §2.2). `ike_packet` builds the IP and UDP headers and adds the
    marker when the ports say so. Here there is no NAT, so everything stays on port 500.

    Next to the capture we write the keys, in the files Wireshark reads: the IKE SA's keys
    into `ikev2_decryption_table`, the child SA's into `esp_sa`. The gateways of the lab do
    the same for every SA they make.
    """),
    code("""
    import tempfile
    from pathlib import Path

    from ipseclab.capture.ike_decode import ike_packet
    from ipseclab.capture.keys import esp_sa_entry
    from ipseclab.capture.pcap import write_pcap
    from ipseclab.keylog import EspSaFile, IkeSaFile, keylog_dir_layout

    work = Path(tempfile.mkdtemp(prefix="nb05-"))
    T0 = 1_700_000_000.0  # the capture's clock starts at a fixed date
    packets = [(ike_packet(data, src, dst, ident=n), T0 + t)
               for n, (data, src, dst, t) in enumerate(wire)]
    write_pcap(work / "ike.pcap", packets)

    esp_file, ike_file = keylog_dir_layout(work / "keys")
    IkeSaFile(ike_file).add(ike_up.keylog_entry())
    for sa in (child_up.outbound, child_up.inbound):
        EspSaFile(esp_file).add(esp_sa_entry(sa))
    print(ike_file.read_text())

    first = packets[0][0]
    print("IP header ", first[:20].hex(" "))
    print("UDP header", first[20:28].hex(" "))
    print("IKE header", first[28:56].hex(" "))
    """),
    md("""
    The IKE header (RFC 7296 §3.1) starts with the initiator's SPI (8 bytes) and a
    responder's SPI of zeros: the responder has not chosen one yet. Then Next Payload,
    version `0x20` (2.0), the exchange type (34 = IKE_SA_INIT), flags (`0x08`: I, sent by
    the original initiator), the Message ID (0) and the length.

    ## Decoding: first without keys

    `decode_capture` is what `ipseclab decode` runs. Without keys, IKE_SA_INIT is fully
    readable: proposals, public DH values, nonces. IKE_AUTH shows only an `SK` payload,
    the Encrypted payload (§3.14), and says `no_sa`: no keys for it.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.capture.summary import frame_line
    from ipseclab.keylog import read_esp_sa, read_ikev2

    for frame in decode_capture(work / "ike.pcap"):
        print(frame_line(frame))
    """),
    md("""
    ## With the key log

    The key log gives SK_ei and SK_er (the encryption keys of each direction, §2.14; with
    AES-GCM the 4-byte salt is part of them, RFC 5282 §7.1). The decoder opens each SK
    payload and lists the payloads inside it in braces.
    """),
    code("""
    ring = KeyRing(read_esp_sa(esp_file), ike_entries=read_ikev2(ike_file))
    frames = list(decode_capture(work / "ike.pcap", ring))
    for frame in frames:
        print(frame_line(frame))
    """),
    md("""
    ## What was offered, what was chosen

    An SA payload carries proposals; the responder picks one of the initiator's (§2.7) and
    answers with that one alone, first for the IKE SA (SAi1/SAr1), then, inside SK, for the
    child SA (SAi2/SAr2). The traffic selectors (§2.9) and identities (§3.5) travel inside
    SK too. `details()` shows them in strongSwan's proposal syntax, as `ipseclab decode -v`
    and a gateway's debug log do; keys, nonces and AUTH values are never part of it.
    """),
    code("""
    for frame in frames:
        if frame.ike is not None:
            print(frame.ike.describe())
            for line in frame.ike.details():
                print("    " + line)
    """),
    md("""
    The same as a ladder diagram, the way RFC 7296 §1.2 draws it: initiator on the left,
    time running down, the payloads inside SK in braces. Compare with the RFC:

    ```
    HDR, SAi1, KEi, Ni  -->
                        <--  HDR, SAr1, KEr, Nr, [CERTREQ]
    HDR, SK {IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr}  -->
                        <--  HDR, SK {IDr, [CERT,] AUTH, SAr2, TSi, TSr}
    ```
    """),
    code("""
    from ipseclab.teaching.ladder import ladder, plot_ladder

    rungs = ladder(frames)
    for r in rungs:
        print(r.label)
    plot_ladder(rungs, title="IKEv2: IKE_SA_INIT and IKE_AUTH")
    plt.show()
    """),
    md("""
    ## Recomputing the keys (RFC 7296 §2.14)

    The key log is a shortcut. Where do its keys come from? Everything needed is in the
    capture, except one secret: the Diffie-Hellman shared value g^ir. We take the public
    values and nonces from the IKE_SA_INIT messages we just decoded.
    """),
    code("""
    from ipseclab.ike.payloads import KeyExchange, Nonce

    init_request, init_response = frames[0].ike, frames[1].ike
    ni = init_request.find(Nonce).data
    nr = init_response.find(Nonce).data
    ke_i = init_request.find(KeyExchange)
    ke_r = init_response.find(KeyExchange)
    spi_i, spi_r = init_response.spi_i, init_response.spi_r
    print("SPIi", spi_i.hex(), "  SPIr", spi_r.hex())
    print("Ni  ", ni.hex())
    print("Nr  ", nr.hex())
    print(f"KEi  group {ke_i.group}:", ke_i.data.hex())
    print(f"KEr  group {ke_r.group}:", ke_r.data.hex())
    """),
    md("""
    Group 31 is Curve25519 (RFC 8031). An eavesdropper sees both public values and cannot
    compute g^ir from them: that is the point of Diffie-Hellman. We can, because we hold
    moon's private key: the engine kept it in its IKE SA object. moon's private key and
    sun's public value *from the capture* give the shared secret (RFC 7748 §6.1).
    """),
    code("""
    moon_sa = moon.ike_sas[0]
    assert moon_sa.dh.public_bytes() == ke_i.data  # this private key is the one behind KEi
    g_ir = moon_sa.dh.exchange(ke_r.data)
    print("g^ir:", g_ir.hex())
    """),
    md("""
    **SKEYSEED = prf(Ni | Nr, g^ir)** (§2.14). The nonces are the key, the DH secret the
    data: the nonces make every IKE SA's keys fresh even if a DH value were reused.
    """),
    code("""
    from ipseclab.crypto.prf import prf

    prf_sha256 = prf("prfsha256")
    SKEYSEED = prf_sha256.prf(ni + nr, g_ir)
    print("SKEYSEED:", SKEYSEED.hex())
    """),
    md("""
    **prf+** (§2.13) stretches a PRF into as many bytes as needed:
    `T1 = prf(K, S | 0x01)`, `T2 = prf(K, T1 | S | 0x02)`, ... Then the seven keys are cut
    from **prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)** in a fixed order (§2.14):

    `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}`

    The sizes come from the algorithms: SK_d, SK_pi and SK_pr take the PRF's preferred key
    size (32 bytes for HMAC-SHA-256, §2.13); SK_a* are empty because AES-GCM authenticates
    by itself; SK_e* are the 16-byte AES key plus the 4-byte salt (RFC 5282 §7.1).
    """),
    code("""
    def prf_plus(key, seed, length):
        out, block, n = b"", b"", 1
        while len(out) < length:
            block = prf_sha256.prf(key, block + seed + bytes([n]))
            out += block
            n += 1
        return out[:length]


    sizes = {"SK_d": 32, "SK_ai": 0, "SK_ar": 0, "SK_ei": 16 + 4, "SK_er": 16 + 4,
             "SK_pi": 32, "SK_pr": 32}
    stream = prf_plus(SKEYSEED, ni + nr + spi_i + spi_r, sum(sizes.values()))
    keys, pos = {}, 0
    for name, size in sizes.items():
        keys[name] = stream[pos:pos + size]
        pos += size
        print(f"{name:6} {size:3} bytes  {keys[name].hex()}")
    """),
    md("""
    The key log holds four of the seven keys (those that protect SK payloads). Ours match,
    byte for byte. The library's own `kdf` module gives the other three, and agrees too.
    """),
    code("""
    from ipseclab.crypto import kdf
    from ipseclab.crypto.transforms import encryption

    [logged] = read_ikev2(ike_file)
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert keys[name.replace("sk", "SK")] == getattr(logged, name), name
    print("SK_ei, SK_er, SK_ai, SK_ar equal the key log's; algorithm:", logged.encryption)

    library = kdf.ike_keys(prf_sha256, kdf.skeyseed(prf_sha256, ni, nr, g_ir), ni, nr,
                           spi_i, spi_r,
                           kdf.IkeKeySizes.for_algorithms(prf_sha256, encryption("aes128gcm16")))
    assert (library.SK_d, library.SK_pi, library.SK_pr) == (keys["SK_d"], keys["SK_pi"],
                                                             keys["SK_pr"])
    """),
    md("""
    ## AUTH with a pre-shared key (RFC 7296 §2.15)

    Diffie-Hellman alone does not say *who* is on the other side. IKE_AUTH proves it: each
    peer MACs the conversation so far, with a key derived from the PSK:

    ```
    AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <InitiatorSignedOctets>)
    InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    ```

    RealMessage1 is moon's whole IKE_SA_INIT request as sent, NonceRData sun's nonce, and
    RestOfInitIDPayload the IDi payload without its 4-byte generic header. Signing its own
    first message binds the AUTH to the proposals and DH values, so an attacker in the
    middle who changed them is caught here. IDi and AUTH are inside SK: the key log lets us
    read them.
    """),
    code("""
    from ipseclab.ike.payloads import Authentication, Identification

    auth_request = frames[2].ike
    print(auth_request.describe())
    idi = auth_request.find(Identification)
    auth_i = auth_request.find(Authentication)
    print("IDi:", idi.describe(), "  AUTH method:", auth_i.method.name)
    """),
    code("""
    real_message_1 = init_request.data
    maced_id = prf_sha256.prf(keys["SK_pi"], idi.to_bytes())
    signed_octets = real_message_1 + nr + maced_id
    pad_key = prf_sha256.prf(PSK, b"Key Pad for IKEv2")
    my_auth = prf_sha256.prf(pad_key, signed_octets)
    print("InitiatorSignedOctets:", len(signed_octets), "bytes")
    print("AUTH computed:  ", my_auth.hex())
    print("AUTH in capture:", auth_i.data.hex())
    assert my_auth == auth_i.data
    """),
    md("""
    sun proves itself the same way, with *its* first message, moon's nonce and SK_pr
    (ResponderSignedOctets, §2.15):
    """),
    code("""
    auth_response = frames[3].ike
    idr = auth_response.find(Identification)
    auth_r = auth_response.find(Authentication)
    their_auth = prf_sha256.prf(pad_key, init_response.data + ni
                                + prf_sha256.prf(keys["SK_pr"], idr.to_bytes()))
    assert their_auth == auth_r.data
    print("sun's AUTH checks too; IDr =", idr.describe())
    """),
    md("""
    ## The child SA's keys: KEYMAT (RFC 7296 §2.17)

    IKE_AUTH also created the first child SA: the SA payloads inside SK carry each side's
    ESP SPI (the SPI on which that side *receives*). Its keys come from SK_d:

    **KEYMAT = prf+(SK_d, Ni | Nr)**

    taken in order: first the keys for traffic from initiator to responder (encryption,
    then integrity), then the other direction (§2.17). With AES-GCM for ESP each direction
    needs 16 bytes of key and 4 of salt (RFC 4106 §8.1), and no integrity key.
    """),
    code("""
    from ipseclab.ike.sa_payload import SecurityAssociation as SaPayload

    spi_moon_in = int.from_bytes(auth_request.find(SaPayload).proposals[0].spi, "big")
    spi_sun_in = int.from_bytes(auth_response.find(SaPayload).proposals[0].spi, "big")
    print(f"moon receives on SPI 0x{spi_moon_in:08x}, sun on SPI 0x{spi_sun_in:08x}")

    KEYMAT = prf_plus(keys["SK_d"], ni + nr, 2 * (16 + 4))
    moon_to_sun, sun_to_moon = KEYMAT[:20], KEYMAT[20:]
    print("initiator -> responder:", moon_to_sun.hex())
    print("responder -> initiator:", sun_to_moon.hex())

    esp_keys = {e.spi: e.encryption_key for e in read_esp_sa(esp_file)}
    assert esp_keys[spi_sun_in] == moon_to_sun  # moon sends to sun's SPI
    assert esp_keys[spi_moon_in] == sun_to_moon
    print("both equal the esp_sa key log")
    """),
    md("""
    ## A ping through the new SA

    moon protects a ping from its LAN with the child SA's outbound SA (tunnel mode,
    RFC 4303 §3.1.2). We add it to the capture: the decoder opens it with the `esp_sa` key,
    and the ladder shows it as a thin arrow after the handshake.
    """),
    code("""
    from scapy.layers.inet import ICMP, IP

    from ipseclab.ipsec import esp

    ping = bytes(IP(src="10.1.0.5", dst="10.2.0.7", id=1) / ICMP(id=1, seq=1) / b"hello via IKE")
    protected = esp.encapsulate(child_up.outbound, ping)
    packets.append((protected, T0 + now + 0.5))
    write_pcap(work / "ike.pcap", packets)

    frames = list(decode_capture(work / "ike.pcap", ring))
    print(frame_line(frames[-1]))
    assert frames[-1].status == "ok" and frames[-1].inner_bytes == ping
    plot_ladder(ladder(frames), title="Handshake, then ESP")
    plt.show()
    """),
    md("""
    ## What else would sun accept? Asking without a handshake

    moon learned one thing about sun: it took `aes128gcm16-prfsha256-x25519`. An engineer
    testing a gateway wants more: every algorithm it would accept. `ipseclab probe` asks
    with one IKE_SA_INIT request per algorithm, and a trick keeps sun from remembering any
    of them. Each request offers the algorithm under test, everything else we know for the
    other transform types, and one *decoy* DH group from the private-use range (65001)
    whose key share is the one in the KE payload. sun knows no such group. If it accepts the
    proposal, it must pick another group and answer INVALID_KE_PAYLOAD, naming the group it
    wants (RFC 7296 §1.3); if not, NO_PROPOSAL_CHOSEN (§2.7). Neither answer creates an
    IKE SA (§1.2). Here the requests go to a fresh copy of sun, in memory.
    """),
    code("""
    from ipseclab.drivers.ike_probe import format_report
    from ipseclab.ike.probe import Prober

    probed_sun = IkeEngine(sun_config, rng=random.Random(9).randbytes)
    prober = Prober(full=False, rng=random.Random(10).randbytes)
    t, requests = 0.0, 0
    while True:
        request, wake = prober.poll(t)  # what to send now, and when to ask again
        if wake is None:
            break
        if request is None:
            t = wake
            continue
        requests += 1
        probed_sun.receive_datagram(request, (MOON, 500), (SUN, 500), t)
        for answer, _, _ in probed_sun.datagrams_to_send():
            prober.receive(answer, t)

    print(format_report(prober, "sun (in memory)"))
    print("IKE SAs sun holds after", requests, "requests:", len(probed_sun.ike_sas))
    """),
    md("""
    What to notice: sun accepts exactly the transforms of its one proposal, and after some
    60 requests it holds no IKE SA at all. The brackets are the requirement levels of
    RFC 8247 §2; a gateway accepting a SHOULD NOT or MUST NOT algorithm (say `modp1024` or
    `md5`) is weak whatever it prefers: lesson 08h shows an on-path attacker pushing two
    gateways that both still accept `modp1024` into it. The `key shares` line is a second
    test: an x25519 key share of all zeros is a point of low order, and a peer that took it
    would compute an all-zero shared secret that everyone knows (RFC 8031 §2.4, and RFC 6989
    for the other groups). sun refuses it. Against a real gateway the same checks are one
    command: `ipseclab probe ADDRESS` (only for gateways you may test).
    """),
    md("""
    ## Your turn 1: what does an eavesdropper see?

    Without the key log, which payloads of moon's IKE_AUTH request stay hidden? List their
    names as the decoder writes them (`"IDi"`, `"AUTH"`, `"N(INITIAL_CONTACT)"`, ...) in
    the set `my_encrypted`. Hint: RFC 7296 §1.2 and the ladder above.
    """),
    code("""
    my_encrypted = {"IDi", "N(INITIAL_CONTACT)", "IDr", "AUTH", "SA", "TSi", "TSr"}  # your answer
    """),
    code("""
    hidden = set(frames[2].inner_payloads)
    assert my_encrypted == hidden, f"not quite: the SK payload holds {sorted(hidden)}"
    print("correct: an eavesdropper sees only the header and the SK payload;",
          "even the identities are encrypted")
    """),
    md("""
    ## Your turn 2: key sizes for another proposal

    A gateway negotiates `aes256gcm16-prfsha384-ecp384` instead. How long is **SK_pi**, in
    bytes? And how many bytes must prf+ produce for all seven SK_* keys together? (§2.13,
    §2.14, RFC 5282 §7.1: AES-256 has a 32-byte key; HMAC-SHA-384's output and preferred key
    size is 48 bytes.)
    """),
    code("""
    my_sk_pi = 48  # your answer
    my_total = 48 + 2 * 0 + 2 * (32 + 4) + 2 * 48  # your answer: SK_d, SK_a*, SK_e*, SK_p*
    """),
    code("""
    sizes_384 = kdf.IkeKeySizes.for_algorithms(prf("prfsha384"), encryption("aes256gcm16"))
    assert my_sk_pi == sizes_384.sk_p, f"SK_pi has {sizes_384.sk_p} bytes"
    assert my_total == sizes_384.total, f"prf+ must make {sizes_384.total} bytes"
    print("correct:", sizes_384)
    """),
    md("""
    ## Your turn 3: a wrong key

    Someone's key log has a typo in SK_ei (one bit). What does the decoder report for moon's
    IKE_AUTH request: `"ok"`, `"no_sa"`, `"auth_failed"` or `"malformed"`? And for sun's
    IKE_AUTH response, which SK_er protects?
    """),
    code("""
    my_request_status = "auth_failed"  # your answer
    my_response_status = "ok"  # your answer
    """),
    code("""
    import dataclasses

    typo = dataclasses.replace(logged, sk_ei=bytes([logged.sk_ei[0] ^ 1]) + logged.sk_ei[1:])
    checked = list(decode_capture(work / "ike.pcap", KeyRing(ike_entries=[typo])))
    assert my_request_status == checked[2].status, f"the decoder said {checked[2].status}"
    assert my_response_status == checked[3].status, f"the decoder said {checked[3].status}"
    print("correct: AES-GCM's tag fails under the wrong key; the other direction has its own")
    """),
    cleanup("work"),
    md("""
    ## Summary

    * IKEv2 sets up an IKE SA and the first child SA in two exchanges, four messages:
      IKE_SA_INIT (SA, KE, nonces, in the clear) and IKE_AUTH (everything inside SK)
      (RFC 7296 §1.2). IDs, AUTH, the child SA's proposal and its traffic selectors are
      encrypted; an eavesdropper sees who talks, not as whom.
    * SKEYSEED = prf(Ni | Nr, g^ir); prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) gives SK_d,
      SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr in that order (§2.14). Only g^ir is secret;
      everything else is in the capture.
    * With a PSK, AUTH = prf(prf(PSK, "Key Pad for IKEv2"), own first message | peer's nonce
      | prf(SK_p, ID)) (§2.15): it binds the identity to the whole IKE_SA_INIT exchange.
    * The child SA's keys are KEYMAT = prf+(SK_d, Ni | Nr), initiator-to-responder first
      (§2.17).
    * Wireshark's `ikev2_decryption_table` and `esp_sa` files (written by the lab for every
      SA) let `ipseclab decode`, the ladder diagram and Wireshark itself read it all.
    """),
]
