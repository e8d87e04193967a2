"""Lesson 06, rekeying, dead peer detection and NAT traversal in a Mininet lab (root;
RFC 7296 §1.3, §2.4, §2.23, RFC 3948).
"""

from __future__ import annotations

from .cells import ROOT_CHECK, SETUP, cleanup, code, md

CELLS = [
    md("""
    # 06: Rekeying, dead peer detection and NAT traversal

    **Learning goals.** After this lesson you can

    * watch a child SA being replaced by a new one while traffic flows, and read the new
      SPIs and the sequence numbers starting over in a capture (RFC 7296 §1.3.3, §2.8);
    * tell a child SA rekey from an IKE SA rekey in the capture (§1.3.2);
    * tell rekeying from reauthentication, and show what only the second one notices
      (§2.8.3);
    * explain how dead peer detection works, and time it (§2.4);
    * show how IKE finds a NAT with the NAT_DETECTION notifies and why ESP then travels in
      UDP port 4500 (§2.23, RFC 3948).

    Everything here runs in real network namespaces with ipseclab's gateways on both
    sides, so this lesson needs root.
    """),
    SETUP,
    ROOT_CHECK,
    md("""
    ## Short lifetimes, written by us

    Keys should not be used forever: an SA is replaced after a time or an amount of data
    (RFC 7296 §2.8). Real gateways rekey every hour or so; to see it happen in seconds we
    write our own `swanctl.conf` files for the site-to-site topology:

    * gw1's child SA `net` has `rekey_time = 4s`, its IKE SA `rekey_time = 12s`;
    * gw1 checks every 2 s that gw2 is alive when it hears nothing (`dpd_delay = 2s`) and
      removes the SAs when it is not (`dpd_action = clear`);
    * gw2 never starts a rekey itself (`rekey_time = 0`): one side rekeys, so the two never
      collide (a collision is legal but harder to read, §2.8.1).
    """),
    code('''
    import tempfile
    import time
    from pathlib import Path

    IKE_CONF = """
    connections {{
      s2s {{
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = aes128gcm16-prfsha256-x25519
        {ike_extra}
        local {{
          auth = psk
          id = {me_id}
        }}
        remote {{
          auth = psk
          id = {peer_id}
        }}
        children {{
          net {{
            local_ts = {my_ts}
            remote_ts = {peer_ts}
            esp_proposals = aes128gcm16
            {child_extra}
          }}
        }}
      }}
    }}
    secrets {{
      ike-lab {{
        id-a = {me_id}
        id-b = {peer_id}
        secret = "a lab secret for lesson 06"
      }}
    }}
    """

    lab_dir = Path(tempfile.mkdtemp(prefix="nb06-"))
    (lab_dir / "gw1.conf").write_text(IKE_CONF.format(
        me="192.0.2.1", peer="192.0.2.2", me_id="gw1.lab.example", peer_id="gw2.lab.example",
        my_ts="10.1.0.0/24", peer_ts="10.2.0.0/24",
        ike_extra="rekey_time = 12s\\n    dpd_delay = 2s",
        child_extra="start_action = start\\n        rekey_time = 4s\\n        dpd_action = clear"))
    (lab_dir / "gw2.conf").write_text(IKE_CONF.format(
        me="192.0.2.2", peer="192.0.2.1", me_id="gw2.lab.example", peer_id="gw1.lab.example",
        my_ts="10.2.0.0/24", peer_ts="10.1.0.0/24",
        ike_extra="rekey_time = 0", child_extra="rekey_time = 0"))
    print((lab_dir / "gw1.conf").read_text())
    '''),
    md("""
    ## The run

    One cell does the whole experiment, and the lab is gone when it ends (also on an
    error). It captures the WAN from the first packet, starts both gateways (gw1 initiates
    at once, `start_action = start`), pings from h1 to h2 for 13 seconds, five pings a
    second, waits 2.5 s in silence, then kills gw2's process without a word, as a crashed
    or unplugged peer would disappear, and times how long gw1 needs to notice. gw1
    retransmits an unanswered request after 0.5 s, then 1 s more, before it gives up
    (`--ike-retransmit-base 0.5`, `--ike-retransmit-tries 2`; by default it waits 1, 2, 4,
    8 and 16 s, RFC 7296 §2.1).
    """),
    code("""
    from ipseclab.drivers.cli_gateway import request_gateway
    from ipseclab.lab.api import Lab
    from ipseclab.lab.ipseclab_gateway import control_socket
    from ipseclab.lab.topology import GatewaySpec


    def wait_until(predicate, timeout):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(0.1)
        return None


    fast_retransmits = {"args": ["--ike-retransmit-base", "0.5", "--ike-retransmit-tries", "2"]}
    gateways = {"gw1": GatewaySpec("ipseclab", (lab_dir / "gw1.conf",), fast_retransmits),
                "gw2": GatewaySpec("ipseclab", (lab_dir / "gw2.conf",))}
    with Lab("site-to-site", lab_dir / "lab", gateways, start_gateways=False) as lab:

        def ike_sas():
            return request_gateway(control_socket("gw1"), {"command": "list-ike-sas"})

        with lab.capture("wan", lab_dir / "rekey.pcap") as rekey_pcap:
            lab.start_gateway("gw2")
            lab.start_gateway("gw1")
            assert wait_until(lambda: any(sa["children"] for sa in ike_sas()), 10) is not None
            ping = lab.ping("h1", "h2", count=65, interval=0.2)
            time.sleep(2.5)  # quiet: one DPD check on the new IKE SA
        after_ping = ike_sas()
        with lab.capture("wan", lab_dir / "dpd.pcap") as dpd_pcap:
            lab.kill_gateway("gw2")  # SIGKILL: gw2 crashes and sends no DELETE
            dpd_seconds = wait_until(lambda: not ike_sas(), 15)
        gw1_log = (lab.workdir / "gw1" / "gateway.log").read_text()
        keylog_dir = lab.workdir

    print("ping h1 -> h2:", ping)
    print(f"DPD: gw1 removed the dead peer's SAs after {dpd_seconds:.1f} s")
    """),
    md("""
    ## What gw1's log says

    Every rekey is a line: a new child SA with new SPIs *replaces* the old one, and the old
    one is deleted just after. The IKE SA is replaced once, with a new pair of IKE SPIs.
    """),
    code("""
    for line in gw1_log.splitlines():
        if any(w in line for w in ("established", "rekeyed", "deleted", "does not answer")):
            print(line.split(" ipseclab.ike ")[-1])
    """),
    md("""
    ## The rekeys in the capture

    The gateways wrote their keys (Wireshark's `esp_sa` and `ikev2_decryption_table`) next
    to the captures, so we can open every IKE message and every ESP packet. The IKE
    messages first:

    * **CREATE_CHILD_SA with N(REKEY_SA)** rekeys a child SA (§1.3.3): the notify names the
      SPI being replaced; new nonces give new keys (KEYMAT, §2.17). Then an INFORMATIONAL
      exchange with DELETE removes the old SA (§1.4.1).
    * **CREATE_CHILD_SA with SA, Ni and KE but no traffic selectors** rekeys the IKE SA
      itself (§1.3.2): a fresh Diffie-Hellman exchange, new IKE SPIs, new SK_* keys.
    * **INFORMATIONAL with an empty SK** is a liveness check, DPD (§2.4): sent when gw1 has
      heard nothing from gw2 for `dpd_delay`.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2

    esp_file, ike_file = keylog_dir_layout(keylog_dir)
    ring = KeyRing(read_esp_sa(esp_file), ike_entries=read_ikev2(ike_file))
    frames = [f for f in decode_capture(rekey_pcap, ring) if f.proto in ("esp", "ike")]
    t0 = frames[0].time
    ike_frames = [f for f in frames if f.proto == "ike"]
    for f in ike_frames:
        who = "gw1" if f.src == "192.0.2.1" else "gw2"
        print(f"{f.time - t0:6.2f}s {who} {'response' if f.response else 'request ':8}"
              f" {f.exchange:16} IKE SPIi {f.ike.spi_i.hex()}  {', '.join(f.payloads)}")
    """),
    md("""
    Now the data. Each ESP packet carries an SPI and a sequence number in the clear
    (RFC 4303 §2.1, §2.2). We plot both against time for the echo requests gw1 sends:
    every colour is one SA. The vertical lines mark the CREATE_CHILD_SA requests.
    """),
    code("""
    esp_out = [f for f in frames if f.proto == "esp" and f.src == "192.0.2.1"]
    spis = list(dict.fromkeys(f.spi for f in esp_out))  # in order of first use
    rekeys = [f.time - t0 for f in ike_frames
              if f.exchange == "CREATE_CHILD_SA" and not f.response]

    fig, (ax_spi, ax_seq) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    colours = plt.cm.tab10.colors
    for i, spi in enumerate(spis):
        pts = [(f.time - t0, f.seq) for f in esp_out if f.spi == spi]
        ax_spi.scatter([t for t, _ in pts], [i] * len(pts), s=12, color=colours[i % 10])
        ax_seq.plot([t for t, _ in pts], [s for _, s in pts], ".-", color=colours[i % 10],
                    label=f"SPI {spi:#010x}")
    for ax in (ax_spi, ax_seq):
        for t in rekeys:
            ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    ax_spi.set_yticks(range(len(spis)), [f"{s:#010x}" for s in spis])
    ax_spi.set_ylabel("SPI of gw1's outbound SA")
    ax_spi.set_title("gw1 -> gw2 ESP packets during a 13 s ping (dotted: CREATE_CHILD_SA)")
    ax_seq.set_ylabel("ESP sequence number")
    ax_seq.set_xlabel("seconds since the first IKE message")
    ax_seq.legend(fontsize=8, loc="upper left")
    plt.tight_layout()
    plt.show()
    print(len(spis), "outbound SAs in turn; packets not decrypted:",
          sum(f.status != "ok" for f in frames))
    """),
    md("""
    Two things to see. The SPI changes about every 4 seconds, as configured. And the
    sequence number **starts over at 1** on each new SA (RFC 4303 §2.2: the counter belongs
    to the SA); that is why rekeying also solves the problem of a counter running out. No
    ping was lost: gw1 installs the new inbound SA before it answers or deletes the old one
    and keeps the old SA until the DELETE, *make before break* (§2.8).

    The one CREATE_CHILD_SA with KE and no TSi/TSr, shortly before 12 s, was the IKE SA's
    rekey. The child SAs move to the new IKE SA with it (§1.3.2), as the IKE SPIi in the
    table shows: the child rekeys after it run on the new IKE SA.
    """),
    code("""
    ike_spis = list(dict.fromkeys(f.ike.spi_i.hex() for f in ike_frames))
    print("IKE SAs seen (initiator SPIs):", ike_spis)
    out_sa = next(sa for sa in after_ping[0]["children"][0]["sas"] if sa["direction"] == "out")
    print("gw1 after the ping: IKE SA rekeyed", after_ping[0]["rekeys"], "time(s); sending on",
          out_sa["spi"], "with sequence number", out_sa["seq"])
    assert len(ike_spis) == 2 and after_ping[0]["rekeys"] == 1
    assert ping.received == ping.sent  # make-before-break: nothing lost across the rekeys
    """),
    md("""
    ## Dead peer detection (RFC 7296 §2.4)

    IKE has no keep-alive of its own. A peer that hears nothing protected for a while
    sends an INFORMATIONAL request with an empty SK payload; the other side must answer
    it. No answer after the retransmissions means the peer is dead: gw1 deletes the IKE SA
    and its child SAs and, with `dpd_action = clear`, leaves it at that (`trap` would wait
    for traffic, `restart` would try again at once).
    """),
    code("""
    dpd_frames = [f for f in decode_capture(dpd_pcap, ring) if f.proto == "ike"]
    for f in dpd_frames:
        print(f"{f.time - dpd_frames[0].time:5.2f}s {f.src} -> {f.dst} {f.exchange}"
              f" #{f.message_id} {', '.join(f.payloads)}")
    print(f"{len(dpd_frames)} unanswered requests: the first and {len(dpd_frames) - 1}"
          f" retransmissions; SAs removed after {dpd_seconds:.1f} s")
    """),
    md("""
    All the requests carry the same Message ID: they are retransmissions of one request,
    not new ones (§2.1). The time DPD takes is `dpd_delay` plus the retransmission
    schedule, a trade-off between noticing fast and declaring a slow peer dead.

    ## Your turn 1: the first sequence number

    What sequence number does the first packet on a freshly rekeyed SA carry? Read it off
    the plot, or think of RFC 4303 §2.2.
    """),
    code("""
    my_first_seq = 1  # your answer
    """),
    code("""
    firsts = {min(f.seq for f in esp_out if f.spi == spi) for spi in spis[1:]}
    assert firsts == {my_first_seq}, f"the capture says {sorted(firsts)}"
    print("correct: each SA counts from 1 again")
    """),
    md("""
    ## Rekeying is not reauthentication (RFC 7296 §2.8.3)

    A rekey makes new keys from the old IKE SA's SK_d and a fresh Diffie-Hellman exchange;
    nobody proves who they are again. A peer whose certificate was revoked, or whose PSK was
    changed, stays connected for as long as rekeys succeed. **Reauthentication** runs
    IKE_SA_INIT and IKE_AUTH again from scratch, recreates the child SAs over the new IKE SA
    and deletes the old one (swanctl's `reauth_time`; ipseclab sets up the new one before it
    deletes the old one, *make before break*).

    This part needs no root: two IKE engines talk in memory (sans-IO: datagrams in,
    datagrams and events out), with the same kind of configuration as above and a second
    child SA `web`. The helper `exchange()` carries the messages back and forth and lists
    them; IKE headers are never encrypted, so exchange type and direction are plain.
    """),
    code("""
    import dataclasses
    import datetime

    from ipseclab.ike import events
    from ipseclab.ike.config import ChildConfig, IkeConfig
    from ipseclab.ike.engine import IkeEngine
    from ipseclab.ike.message import parse_message

    GW1, GW2 = "192.0.2.1", "192.0.2.2"


    def site(me, peer, lans, psk):
        children = [ChildConfig(name, local_ts=[mine], remote_ts=[theirs],
                                esp_proposals="aes128gcm16")
                    for name, (mine, theirs) in zip(("net", "web"), lans, strict=True)]
        return IkeConfig("s2s", local_addrs=[me], remote_addrs=[peer], local_id=me,
                         remote_id=peer, proposals="aes128gcm16-prfsha256-x25519", psk=psk,
                         children=children)


    psk = b"a lab secret for lesson 06"
    gw1 = IkeEngine(site(GW1, GW2, [("10.1.0.0/24", "10.2.0.0/24"),
                                    ("10.1.0.0/24", "10.2.80.0/24")], psk))
    gw2 = IkeEngine(site(GW2, GW1, [("10.2.0.0/24", "10.1.0.0/24"),
                                    ("10.2.80.0/24", "10.1.0.0/24")], psk))
    names = {GW1: "gw1", GW2: "gw2"}


    def exchange(now, show=True):
        \"\"\"Deliver datagrams until both engines are quiet; list the IKE messages.\"\"\"
        messages = []
        while True:
            out = [(gw2, d) for d in gw1.datagrams_to_send()]
            out += [(gw1, d) for d in gw2.datagrams_to_send()]
            if not out:
                return messages
            for receiver, (data, src, dst) in out:
                m = parse_message(data)
                messages.append(m.exchange_type.name)
                if show:
                    print(f"  {names[src[0]]} -> {names[dst[0]]}  {m.exchange_type.name:16}"
                          f" {'response' if m.is_response else 'request'}")
                receiver.receive_datagram(data, src, dst, now)


    def state(engine):
        [ike] = engine.ike_sas
        return ike.name[:8], {c.config.name: (c.reqid, f"{c.spi_in:08x}") for c in ike.children}


    gw1.initiate("s2s", 0.0)
    exchange(0.0, show=False)
    gw1.create_child("s2s", "web", 1.0)
    exchange(1.0, show=False)
    print("established: IKE SA", *state(gw1))
    print("IKE SA rekey:")
    gw1.rekey_ike_sa(gw1.ike_sas[0].name, 10.0)
    exchange(10.0)
    print("after the rekey:", *state(gw1))
    print("reauthentication:")
    gw1.reauthenticate_ike_sa("s2s", 20.0)
    reauth_messages = exchange(20.0)
    print("after the reauthentication:", *state(gw1))
    """),
    md("""
    Read the three lines of state (IKE SA, then per child SA its reqid and inbound SPI):

    * the **IKE SA rekey** is one CREATE_CHILD_SA exchange and a Delete of the old IKE SA;
      the child SAs move to the new IKE SA unchanged, same SPIs (§1.3.2, §2.18);
    * the **reauthentication** is a whole new start: IKE_SA_INIT, IKE_AUTH (with the first
      child SA), CREATE_CHILD_SA for the second one, and only then the Delete of the old IKE
      SA, which takes the old child SAs with it (§1.4.1). New IKE SPIs, new child SPIs, new
      keys from a new SKEYSEED; the reqids stay, so the SPD's entries stay as they are, and
      the new IKE_AUTH carries no INITIAL_CONTACT (the peer must keep the old SAs until the
      Delete, §2.4).

    Now the case reauthentication exists for: gw2 changes the PSK (say, an employee left).
    gw1 still has the old one.
    """),
    code("""
    gw2.configs["s2s"].psk = b"a new secret gw1 does not know"
    print("IKE SA rekey:")
    gw1.rekey_ike_sa(gw1.ike_sas[0].name, 30.0)
    exchange(30.0)
    print("after the rekey:", *state(gw1), "<- still up: a rekey proves nothing")
    print("reauthentication:")
    gw1.reauthenticate_ike_sa("s2s", 40.0)
    exchange(40.0)
    failed = [e for e in iter(gw1.next_event, None) if isinstance(e, events.AuthenticationFailed)]
    print("gw1:", failed[-1].reason)
    print("gw1 keeps the old IKE SA for now:", *state(gw1))
    print("... until its over_time ends it, at", gw1.ike_sas[0].life_ends, "s")
    assert failed and len(gw1.ike_sas) == 1
    """),
    md("""
    The rekey went through: it never looks at the PSK. The reauthentication failed in
    IKE_AUTH (gw2 answered AUTHENTICATION_FAILED), so gw1 keeps the IKE SA it has, tries
    again a little later, and the IKE SA dies at the latest `over_time` after its rekey or
    reauthentication was due (strongSwan's rule, here 10% of the 4 h `rekey_time`).

    With certificates the same thing happens when the CA revokes one: its certificate
    revocation list (CRL, RFC 5280 §5) names the certificate's serial number, and a gateway
    that has the CRL (swanctl's `x509crl/` folder, `ipseclab ctl load-creds`) refuses the
    peer at the next IKE_AUTH. Below, a lab CA issues certificates for both gateways,
    they connect, the CA revokes gw1's certificate, and gw2 gets the CRL.
    """),
    code("""
    from ipseclab.ike import testpki
    from ipseclab.ike.certs import load_certificate, load_private_key

    pki = testpki.make_lab_pki(lab_dir / "pki", (
        testpki.HostSpec("gw1", "ecdsa256", "C=CH, O=ipseclab, CN=gw1", ("192.0.2.1",)),
        testpki.HostSpec("gw2", "ecdsa256", "C=CH, O=ipseclab, CN=gw2", ("192.0.2.2",))),
        ca_key="ecdsa256")


    def pubkey_site(me, peer, name, lans):
        config = site(me, peer, lans, b"")
        return dataclasses.replace(
            config, local_auth="pubkey", remote_auth="pubkey", local_id="", remote_id="%any",
            local_certs=[load_certificate(pki.certs[name])],
            private_key=load_private_key(pki.keys[name]), remote_cacerts=[pki.ca_cert])


    # certificates are checked at wall-clock time; the engines count seconds from 0
    gw1 = IkeEngine(pubkey_site(GW1, GW2, "gw1", [("10.1.0.0/24", "10.2.0.0/24"),
                                                  ("10.1.0.0/24", "10.2.80.0/24")]),
                    wall_clock=lambda now: now + time.time())
    gw2 = IkeEngine(pubkey_site(GW2, GW1, "gw2", [("10.2.0.0/24", "10.1.0.0/24"),
                                                  ("10.2.80.0/24", "10.1.0.0/24")]),
                    wall_clock=lambda now: now + time.time())
    gw1.initiate("s2s", 100.0)
    exchange(100.0, show=False)
    print("established with certificates:", *state(gw1))
    crl = testpki.issue_crl(pki.ca_cert, pki.ca_key, [load_certificate(pki.certs["gw1"])],
                            last_update=datetime.datetime.now(datetime.UTC))
    print("the CRL revokes serial", hex(crl[0].serial_number))
    gw2.configs["s2s"].remote_crls = [crl]  # what ctl load-creds does on gw2
    gw1.rekey_ike_sa(gw1.ike_sas[0].name, 110.0)
    exchange(110.0, show=False)
    print("after a rekey:", *state(gw1))
    gw1.reauthenticate_ike_sa("s2s", 120.0)
    exchange(120.0, show=False)
    refused = [e for e in iter(gw2.next_event, None) if isinstance(e, events.AuthenticationFailed)]
    print("gw2:", refused[-1].reason)
    assert "was revoked" in refused[-1].reason and len(gw1.ike_sas) == 1
    """),
    md("""
    ## Your turn 2: counting a reauthentication

    How many IKE messages (requests and responses) did the successful reauthentication
    above take, for an IKE SA with two child SAs? And how many would it take with three?
    """),
    code("""
    my_two_children, my_three_children = 8, 10  # your answers
    """),
    code("""
    assert my_two_children == len(reauth_messages), f"count again: {reauth_messages}"
    assert my_three_children == len(reauth_messages) + 2
    print("correct: IKE_SA_INIT and IKE_AUTH (the first child SA), one CREATE_CHILD_SA per"
          " further child SA, one INFORMATIONAL for the Delete: two messages each")
    """),
    md("""
    ## NAT traversal (RFC 7296 §2.23, RFC 3948)

    A road warrior `rw` (10.9.0.10) sits behind a NAT router that rewrites its address to
    `203.0.113.2`; the site gateway `gw` is `203.0.113.1` with LAN 10.2.0.0/24
    (`topologies/nat-road-warrior.yaml`). ESP has no ports, so a NAT cannot tell two ESP
    flows apart, and a changed outer address would not matter to ESP but does to IKE's
    checks. IKEv2 therefore *detects* the NAT and moves everything to UDP port 4500.

    The gateway accepts the road warrior from any address (`remote_addrs = %any`) and
    knows it by its identity, not by its address.
    """),
    code("""
    (lab_dir / "rw.conf").write_text(IKE_CONF.format(
        me="10.9.0.10", peer="203.0.113.1", me_id="rw.lab.example", peer_id="gw.lab.example",
        my_ts="10.9.0.10/32", peer_ts="10.2.0.0/24", ike_extra="",
        child_extra="start_action = start"))
    (lab_dir / "gw.conf").write_text(IKE_CONF.format(
        me="203.0.113.1", peer="%any", me_id="gw.lab.example", peer_id="rw.lab.example",
        my_ts="10.2.0.0/24", peer_ts="10.9.0.10/32", ike_extra="", child_extra=""))

    gateways = {"rw": GatewaySpec("ipseclab", (lab_dir / "rw.conf",)),
                "gw": GatewaySpec("ipseclab", (lab_dir / "gw.conf",))}


    def gw_sas():
        return request_gateway(control_socket("gw"), {"command": "list-ike-sas"})


    with Lab("nat-road-warrior", lab_dir / "nat", gateways, start_gateways=False) as lab:
        with lab.capture("home", lab_dir / "home.pcap") as home_pcap, \\
                lab.capture("wan", lab_dir / "nat-wan.pcap") as wan_pcap:
            lab.start_gateway("gw")
            lab.start_gateway("rw")
            assert wait_until(lambda: any(sa["children"] for sa in gw_sas()), 10) is not None
            nat_ping = lab.ping("rw", "h2", count=3)
        gw_view = gw_sas()[0]
        nat_keys = lab.workdir
    print("ping rw -> h2:", nat_ping)
    print("gw sees the road warrior at", gw_view["remote"], "NAT detected:", gw_view["nat"])
    """),
    md("""
    The same conversation, captured on both sides of the NAT. Behind it, `rw` speaks from
    10.9.0.10; in front of it the NAT has put in its own address. After IKE_SA_INIT both
    peers switch to port 4500, and ESP travels inside UDP too (ESP-in-UDP, RFC 3948 §2.1);
    on port 4500 an IKE message starts with four zero bytes, the non-ESP marker (§2.2).
    """),
    code("""
    from scapy.layers.inet import IP

    from ipseclab.capture.pcap import ip_payload, read_capture

    esp_file, ike_file = keylog_dir_layout(nat_keys)
    for name, pcap in (("home (behind the NAT)", home_pcap), ("wan (in front of it)", wan_pcap)):
        print(f"--- {name} ---")
        raw = {f.number: ip_payload(f.linktype, f.data) for f in read_capture(pcap)}
        ring = KeyRing(read_esp_sa(esp_file), ike_entries=read_ikev2(ike_file))
        for f in decode_capture(pcap, ring):
            if f.proto in ("ike", "esp"):
                p = IP(raw[f.frame])
                what = f.exchange if f.proto == "ike" else f"ESP SPI {f.spi:#010x}"
                print(f"  {p.src}:{p.sport} -> {p.dst}:{p.dport}  {what}")
    """),
    md("""
    ### How the NAT was found: the NAT_DETECTION notifies (§2.23)

    In IKE_SA_INIT each side sends two hashes, `SHA-1(SPIi | SPIr | IP address | port)`:
    NAT_DETECTION_SOURCE_IP over the address and port it sends *from*,
    NAT_DETECTION_DESTINATION_IP over those it sends *to*. The receiver computes the same
    hashes over the addresses it actually sees. A difference in the source hash means a NAT
    in front of the *sender*. (In the request SPIr is still zero.)
    """),
    code("""
    from ipseclab.ike.constants import NotifyType
    from ipseclab.ike.negotiation import natd_hash

    ring = KeyRing(ike_entries=read_ikev2(ike_file))
    wan_raw = {f.number: ip_payload(f.linktype, f.data) for f in read_capture(wan_pcap)}
    init = next(f for f in decode_capture(wan_pcap, ring) if f.exchange == "IKE_SA_INIT")
    seen = IP(wan_raw[init.frame])  # the request as gw receives it
    natd_src = init.ike.message.notifies(NotifyType.NAT_DETECTION_SOURCE_IP)[0].data
    natd_dst = init.ike.message.notifies(NotifyType.NAT_DETECTION_DESTINATION_IP)[0].data
    spi_i, spi_r = init.ike.spi_i, init.ike.spi_r

    print("rw's NAT_DETECTION_SOURCE_IP:      ", natd_src.hex())
    print(f"gw's hash of {seen.src}:{seen.sport}:      ",
          natd_hash(spi_i, spi_r, seen.src, seen.sport).hex())
    print("rw's NAT_DETECTION_DESTINATION_IP: ", natd_dst.hex())
    print(f"gw's hash of {seen.dst}:{seen.dport}:      ",
          natd_hash(spi_i, spi_r, seen.dst, seen.dport).hex())
    """),
    md("""
    ## Your turn 3: whose address did the NAT change?

    Which of the two hashes differs, `"source"` or `"destination"`? And which address and
    port did rw hash into its NAT_DETECTION_SOURCE_IP? Fill in the three values.
    """),
    code("""
    my_mismatch = "source"  # your answer: "source" or "destination"
    my_rw_address, my_rw_port = "10.9.0.10", 500  # your answer
    """),
    code("""
    mismatch = {"source": natd_hash(spi_i, spi_r, seen.src, seen.sport) != natd_src,
                "destination": natd_hash(spi_i, spi_r, seen.dst, seen.dport) != natd_dst}
    assert mismatch[my_mismatch] and not mismatch[{"source": "destination",
                                                    "destination": "source"}[my_mismatch]]
    assert natd_hash(spi_i, spi_r, my_rw_address, my_rw_port) == natd_src
    print("correct: the NAT is in front of rw; gw keeps the NAT's address and port for rw,"
          " and both sides send ESP in UDP 4500")
    """),
    cleanup("lab_dir"),
    md("""
    ## Summary

    * A child SA is rekeyed with CREATE_CHILD_SA carrying N(REKEY_SA) (RFC 7296 §1.3.3):
      new SPIs, new KEYMAT, sequence numbers from 1; the old SA is deleted after the new one
      works, so no packet is lost (§2.8).
    * An IKE SA is rekeyed with CREATE_CHILD_SA carrying SA, nonce and KE but no traffic
      selectors (§1.3.2); its children move to the new IKE SA.
    * DPD is an empty INFORMATIONAL request (§2.4); a peer that answers no retransmission
      is declared dead and its SAs are removed (`dpd_action`).
    * Reauthentication (§2.8.3, `reauth_time`) is IKE_SA_INIT and IKE_AUTH again, the child
      SAs made anew, and the old IKE SA deleted: the only way to find out that a peer's
      credentials no longer hold, which a rekey never checks.
    * NAT_DETECTION_SOURCE_IP/DESTINATION_IP hash the addresses and ports each side sees
      (§2.23); a mismatch moves IKE and ESP to UDP 4500 (RFC 3948), which a NAT can
      rewrite like any UDP flow.
    """),
]
