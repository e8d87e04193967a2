"""Lesson 09, capstone: a broken site-to-site tunnel in Mininet (root), diagnosed from logs,
``ipseclab ctl list-sas`` and the decoded capture, and fixed one fault at a time.
"""

from __future__ import annotations

from .cells import ROOT_CHECK, SETUP_INLINE, cleanup, code, md

CELLS = [
    md("""
    # 09: Capstone, a broken tunnel to diagnose and fix

    **Learning goals.** After this lesson you can

    * diagnose a site-to-site tunnel that does not come up, from three sources: the
      gateways' logs, `ipseclab ctl list-sas`, and the decoded capture of the WAN;
    * read the error notifies of IKEv2 (RFC 7296 §3.10.1): NO_PROPOSAL_CHOSEN in the clear
      in IKE_SA_INIT, TS_UNACCEPTABLE and AUTHENTICATION_FAILED inside the encrypted
      IKE_AUTH response, opened with the key log the gateways write after IKE_SA_INIT;
    * fix the configuration one fault at a time and prove the fix with a ping.

    This lesson runs the site-to-site topology in Mininet with ipseclab on both gateways:
    it needs root.
    """),
    SETUP_INLINE,
    ROOT_CHECK,
    md("""
    ## The ticket

    *"Since gw2 was reconfigured last night, site 1 (10.1.0.0/24) cannot reach site 2
    (10.2.0.0/24)."* gw1's configuration is the one that worked before. Here are both
    files, as the notebook writes them; read gw2's with care, but let the tools find the
    problems.
    """),
    code('''
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    TEMPLATE = """
    connections {{
      site-to-site {{
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = {proposals}
        local {{
          auth = psk
          id = {me}.lab.example
        }}
        remote {{
          auth = psk
          id = {peer}.lab.example
        }}
        children {{
          net {{
            local_ts = {local_ts}
            remote_ts = {remote_ts}
            esp_proposals = aes128gcm16
            start_action = trap
          }}
        }}
      }}
    }}
    secrets {{
      ike-site-to-site {{
        id-gw1 = gw1.lab.example
        id-gw2 = gw2.lab.example
        secret = "capstone lab secret"
      }}
    }}
    """
    ADDR = {"gw1": "192.0.2.1", "gw2": "192.0.2.2"}


    def config(me, peer, proposals, local_ts, remote_ts):
        text = TEMPLATE.format(me=me, peer=peer, proposals=proposals, local_ts=local_ts,
                               remote_ts=remote_ts)
        return text.replace(f"addrs = {me}\\n", f"addrs = {ADDR[me]}\\n").replace(
            f"addrs = {peer}\\n", f"addrs = {ADDR[peer]}\\n")


    lab_dir = Path(tempfile.mkdtemp(prefix="nb09-"))
    GW1 = config("gw1", "gw2", "aes128gcm16-prfsha256-x25519", "10.1.0.0/24", "10.2.0.0/24")
    GW2_BROKEN = config("gw2", "gw1", "aes256-sha256-modp2048", "10.2.0.0/24", "10.1.1.0/24")
    print(GW2_BROKEN)
    '''),
    md("""
    ## A tool for each attempt

    `attempt(gw2_conf)` starts the lab with gw1's file and the given gw2 file, captures
    the WAN while h1 pings h2 (both configs say `start_action = trap`, so the ping itself
    starts IKE, RFC 4301 §5.1), collects the evidence and tears the lab down again, also on
    an error. Each attempt is a fresh network, as after a restart of both gateways.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2
    from ipseclab.lab.api import Lab
    from ipseclab.lab.ipseclab_gateway import control_socket
    from ipseclab.lab.topology import GatewaySpec

    runs = 0


    def attempt(gw2_conf):
        global runs
        runs += 1
        where = lab_dir / f"attempt{runs}"
        where.mkdir()
        (where / "gw1.conf").write_text(GW1)
        (where / "gw2.conf").write_text(gw2_conf)
        gateways = {name: GatewaySpec("ipseclab", (where / f"{name}.conf",))
                    for name in ("gw1", "gw2")}
        with Lab("site-to-site", where / "lab", gateways) as lab:
            with lab.capture("wan") as pcap:
                ping = lab.ping("h1", "h2", count=3, interval=0.3)
            ctl = subprocess.run([sys.executable, "-m", "ipseclab", "ctl", "--socket",
                                  str(control_socket("gw1")), "list-sas"],
                                 capture_output=True, text=True, check=True).stdout
            logs = {gw: (lab.workdir / gw / "gateway.log").read_text() for gw in ("gw1", "gw2")}
        esp_file, ike_file = keylog_dir_layout(where / "lab")
        ring = KeyRing(read_esp_sa(esp_file) if esp_file.exists() else (),
                       ike_entries=read_ikev2(ike_file) if ike_file.exists() else ())
        frames = [f for f in decode_capture(pcap, ring) if f.proto in ("ike", "esp")]
        print("ping h1 -> h2:", ping)
        return {"ping": ping, "ctl": ctl, "logs": logs, "frames": frames}


    def show_logs(run):
        for gw, text in run["logs"].items():
            for line in text.splitlines():
                if "WARNING" in line or "ERROR" in line:
                    print(gw, line.split(" ipseclab.")[-1])


    def show_ike(run):
        for f in run["frames"]:
            if f.proto == "ike":
                print(f"{f.src:>9} -> {f.dst:<9} {f.exchange:12}"
                      f" {'response' if f.response else 'request '} {', '.join(f.payloads)}")


    first = attempt(GW2_BROKEN)
    """),
    md("""
    ## Attempt 1: the evidence

    **The logs.** Start with what the gateways say about themselves.
    """),
    code("""
    show_logs(first)
    """),
    md("""
    **The control socket.** `ipseclab ctl list-sas` on gw1 lists what exists: no IKE SA,
    no child SA.
    """),
    code("""
    print(first["ctl"])
    """),
    md("""
    **The capture.** IKE_SA_INIT is not encrypted, so no key log is needed. gw2 answered
    gw1's request with nothing but a notify: **NO_PROPOSAL_CHOSEN** (type 14, RFC 7296
    §3.10.1), "none of your proposals is acceptable to me" (§2.7). A responder sends it
    instead of SA, KE and Nr; the IKE SA dies before it was born.
    """),
    code("""
    from ipseclab.ike.sa_payload import SecurityAssociation as SaPayload

    show_ike(first)
    request = next(f for f in first["frames"] if f.exchange == "IKE_SA_INIT" and not f.response)
    offer = request.ike.message.find(SaPayload).proposals[0]
    print("\\ngw1's proposal, transform by transform (RFC 7296 §3.3.2):")
    for t in offer.transforms:
        print(f"  {getattr(t.transform_type, 'name', t.transform_type):6}"
              f" {getattr(t.transform_id, 'name', t.transform_id)}")
    """),
    md("""
    ## Your turn 1: fix the proposals

    gw1 offers `aes128gcm16-prfsha256-x25519`; gw2 was changed to
    `aes256-sha256-modp2048`. The two share no algorithm for encryption, PRF or DH group.
    Write the `proposals` line gw2 should have, so that both ends agree with the rest of
    the site's gateways.
    """),
    code("""
    my_gw2_proposals = "aes128gcm16-prfsha256-x25519"  # your answer
    """),
    code("""
    GW2_STEP1 = GW2_BROKEN.replace("aes256-sha256-modp2048", my_gw2_proposals)
    second = attempt(GW2_STEP1)
    assert any(f.exchange == "IKE_AUTH" for f in second["frames"]), \\
        "still no IKE_AUTH: the proposals do not match yet"
    print("IKE_SA_INIT now succeeds")
    """),
    md("""
    ## Attempt 2: one step further, still no ping

    The proposals match now, and yet the ping fails. Same three sources.
    """),
    code("""
    show_logs(second)
    print()
    print(second["ctl"])
    """),
    md("""
    The IKE SA is ESTABLISHED: the PSK and the identities are right, IKE_AUTH succeeded.
    But it has no child SA. In IKEv2 the first child SA is created inside IKE_AUTH (§1.2);
    if only the child part fails, the IKE SA stays up and the responder puts an error
    notify into its IKE_AUTH response (§1.2, §2.21.2). That response is encrypted: an
    observer cannot read the reason, but with the key log that gw1 wrote for the IKE SA we
    can.
    """),
    code("""
    show_ike(second)
    auth_request = next(f for f in second["frames"]
                        if f.exchange == "IKE_AUTH" and not f.response)
    print()
    for p in auth_request.ike.inner_payloads:
        if type(p).__name__ in ("TSi", "TSr"):
            ranges = ", ".join(f"{ts.start_address} - {ts.end_address}" for ts in p.selectors)
            print(f"gw1 proposes {type(p).__name__}: {ranges}")
    """),
    md("""
    **TS_UNACCEPTABLE** (type 38): the traffic selectors gw1 proposed (§2.9), TSi =
    10.1.0.0/24 (its side) and TSr = 10.2.0.0/24 (gw2's side), do not fit gw2's policy.
    gw2 narrows the initiator's selectors to the intersection with its own (§2.9); with
    gw2's `remote_ts = 10.1.1.0/24`, a typo, the intersection is empty.

    ## Your turn 2: fix the traffic selectors

    What must gw2's `remote_ts` be?
    """),
    code("""
    my_gw2_remote_ts = "10.1.0.0/24"  # your answer
    """),
    md("""
    ## The check: a working tunnel

    Both fixes together; the ping must pass, over ESP, and every packet must decrypt with
    the key log.
    """),
    code("""
    GW2_FIXED = GW2_STEP1.replace("remote_ts = 10.1.1.0/24", f"remote_ts = {my_gw2_remote_ts}")
    fixed = attempt(GW2_FIXED)
    show_ike(fixed)
    esp = [f for f in fixed["frames"] if f.proto == "esp"]
    assert fixed["ping"].received == fixed["ping"].sent, "the tunnel still does not pass ping"
    assert esp and all(f.status == "ok" for f in esp)
    print(f"fixed: {fixed['ping']}, {len(esp)} ESP packets on the WAN, all decrypted")
    print(fixed["ctl"])
    """),
    md("""
    ## A third fault: the pre-shared key

    A month later the ticket is back: someone "rotated" the PSK in gw2's `secrets` section
    and forgot gw1. Proposals and selectors are right this time.
    """),
    code("""
    GW2_ROTATED = GW2_FIXED.replace('secret = "capstone lab secret"',
                                    'secret = "capstone lab secret 2025"')
    third = attempt(GW2_ROTATED)
    show_logs(third)
    print()
    print(third["ctl"])
    """),
    md("""
    The logs name the failed check: gw2, the responder, computed the AUTH value gw1 should
    have sent, prf(prf(PSK, "Key Pad for IKEv2"), <InitiatorSignedOctets>) (RFC 7296
    §2.15), and it differs from gw1's; gw1 learns it from gw2's answer. Neither log shows
    the PSK itself. `ctl list-sas` shows nothing: the IKE SA was never established.

    **The capture.** The refusal travels inside the SK payload of the IKE_AUTH response
    (§2.21.2: an error in IKE_AUTH is reported in the protected response). Can we read it
    when no IKE SA came up? Yes: the SK_e and SK_a keys exist as soon as IKE_SA_INIT is
    done (SKEYSEED, §2.14), before anyone is authenticated, and the gateways write them to
    the key log at that moment, as strongSwan logs them. Both sides hold the same keys;
    only the PSK differs, and the PSK does not enter SKEYSEED.
    """),
    code("""
    show_ike(third)
    for gw, text in third["logs"].items():
        for line in text.splitlines():
            if "keys derived" in line:
                print(gw, line.split(" ipseclab.")[-1])
    auth_response = next(f for f in third["frames"] if f.exchange == "IKE_AUTH" and f.response)
    print("\\nIKE_AUTH response:", ", ".join(auth_response.payloads))
    assert auth_response.payloads == ["SK{N(AUTHENTICATION_FAILED)}"]
    """),
    md("""
    ## Your turn 3: fix the key

    Which `secret` must gw2's `secrets` section hold? (Only gw1's file, the one that worked
    before, can tell you: a PSK is never on the wire.)
    """),
    code("""
    my_gw2_secret = "capstone lab secret"  # your answer
    """),
    code("""
    GW2_KEYED = GW2_ROTATED.replace('"capstone lab secret 2025"', f'"{my_gw2_secret}"')
    keyed = attempt(GW2_KEYED)
    assert keyed["ping"].received == keyed["ping"].sent, "still no tunnel: the PSKs differ"
    assert not any("authentication failed" in text for text in keyed["logs"].values())
    print("the PSKs match again:", keyed["ping"])
    """),
    cleanup("lab_dir"),
    md("""
    ## Summary

    * Diagnose from the outside in: the logs say *what* failed, `ctl list-sas` shows *how
      far* the tunnel got (nothing, an IKE SA without child, or both), the capture proves
      what the peers actually said.
    * NO_PROPOSAL_CHOSEN in IKE_SA_INIT (RFC 7296 §2.7, §3.10.1) means no common algorithm:
      compare the proposals; it is readable without keys.
    * TS_UNACCEPTABLE in the IKE_AUTH response (§2.9) means the IKE SA is fine but the
      traffic selectors do not intersect: compare `local_ts`/`remote_ts` on both sides. It
      is encrypted; the key log reads it.
    * A wrong PSK ends one exchange later: AUTHENTICATION_FAILED (§2.21.2) inside SK of
      the IKE_AUTH response. The keys exist after IKE_SA_INIT (§2.14) and the gateways log
      them then, so the capture still opens although no IKE SA came up; the responder's
      log names the check that failed, never the key.
    * Fix one fault at a time and test after each: the second fault hid behind the first.
    """),
]
