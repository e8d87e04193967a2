"""Lesson 07, interop: ipseclab's gateway opposite strongSwan in a Mininet lab (root), the
handshake decoded and the keys of both ends compared (RFC 7296 §2.14, §2.17).
"""

from __future__ import annotations

from .cells import ROOT_CHECK, SETUP, cleanup, code, md

CELLS = [
    md("""
    # 07: Interop, our gateway opposite strongSwan

    **Learning goals.** After this lesson you can

    * run ipseclab's gateway against strongSwan, the reference implementation, with one
      `swanctl.conf` syntax on both sides;
    * decode the handshake between the two from a capture with the key log our gateway
      wrote, as a ladder diagram (RFC 7296 §1.2);
    * read `swanctl --list-sas` and `ipseclab ctl list-sas` side by side and match them up;
    * check that both ends derived the same keys, which is what interoperability means for
      IKE (§2.14, §2.17).

    This lesson runs strongSwan (`charon-systemd`) in a Mininet namespace: it needs root and
    the Debian packages charon-systemd, strongswan-swanctl and libcharon-extra-plugins.
    """),
    SETUP,
    ROOT_CHECK,
    code("""
    from ipseclab.lab import strongswan

    if not strongswan.available():
        raise NeedsRoot("strongSwan is not installed: apt-get install charon-systemd"
                        " strongswan-swanctl libcharon-extra-plugins")
    print("strongSwan found:", strongswan.CHARON)
    """),
    md("""
    ## The scenario: site-to-site-mixed

    The site-to-site topology (`h1 -- gw1 == gw2 -- h2`) with ipseclab on gw1 and strongSwan
    on gw2, both reading the config files in `topologies/configs/site-to-site/`: the same
    file format, a PSK, `aes128gcm16-prfsha256-x25519` for IKE and `aes128gcm16` for ESP.
    strongSwan initiates as soon as it starts; gw1 answers.

    One detail of this strongSwan: it has no kernel ESP here and carries ESP in user space
    (`kernel-libipsec`), which always encapsulates ESP in UDP (RFC 3948), as if there were a
    NAT. Our gateway follows its lead: IKE moves to port 4500 after IKE_SA_INIT (RFC 7296
    §2.23) and ESP travels in UDP 4500 too.
    """),
    code("""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ipseclab.lab.api import Lab
    from ipseclab.lab.ipseclab_gateway import control_socket
    from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec

    CONFIGS = TOPOLOGY_DIR / "configs" / "site-to-site"
    gateways = {
        "gw1": GatewaySpec("ipseclab", (CONFIGS / "gw1.swanctl.conf",)),
        "gw2": GatewaySpec("strongswan", (CONFIGS / "gw2.swanctl.conf",), {"initiate": ["net"]}),
    }
    lab_dir = Path(tempfile.mkdtemp(prefix="nb07-"))
    with Lab("site-to-site", lab_dir, gateways, start_gateways=False) as lab:
        with lab.capture("wan") as pcap:
            lab.start_gateway("gw1")
            lab.start_gateway("gw2")  # returns once strongSwan's child SA 'net' is up
            ping = lab.ping("h1", "h2", count=3, pattern="ipseclab-secret")
        strongswan_view = lab.node("gw2").launcher.charon.swanctl("--list-sas")
        ipseclab_view = subprocess.run(
            [sys.executable, "-m", "ipseclab", "ctl", "--socket", str(control_socket("gw1")),
             "list-sas"], capture_output=True, text=True, check=True).stdout
        strongswan_keys = lab.node("gw2").launcher.keys()  # from charon's log, level 4
    print("ping h1 -> h2:", ping)
    """),
    md("""
    ## The handshake, decoded with our key log

    gw1 wrote the IKE SA's keys into Wireshark's `ikev2_decryption_table` and the child
    SA's into `esp_sa` (in `wireshark/` of the lab directory). With them the decoder opens
    every SK payload (§3.14) and every ESP packet. strongSwan sends more notifies than we
    do (MOBIKE, redirect, fragmentation support...); a peer ignores status notifies it does
    not know (§3.10.1), which is one of the rules that make interop work.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2
    from ipseclab.teaching.ladder import ladder, plot_ladder

    esp_file, ike_file = keylog_dir_layout(lab_dir)
    our_ike_keys, our_esp_keys = read_ikev2(ike_file), read_esp_sa(esp_file)
    ring = KeyRing(our_esp_keys, ike_entries=our_ike_keys)
    frames = [f for f in decode_capture(pcap, ring) if f.proto in ("ike", "esp")]
    for f in frames:
        if f.proto == "ike":
            print(f"{f.src:>9} -> {f.dst:<9} {f.exchange:12} {', '.join(f.payloads)}")
    print(len([f for f in frames if f.proto == "esp" and f.status == "ok"]),
          "ESP packets decrypted, all in UDP 4500:", all(f.udp_encap for f in frames
                                                         if f.proto == "esp"))
    plot_ladder(ladder(frames), title="strongSwan (gw2) initiates, ipseclab (gw1) answers")
    plt.show()
    """),
    md("""
    ## Two views of one IKE SA

    strongSwan's `swanctl --list-sas` and our `ipseclab ctl list-sas` print the same
    things in nearly the same layout. Match them up: the IKE SPIs (the `*` marks the local
    side's SPI), the identities and addresses, the algorithms (strongSwan writes the IANA
    names, we the proposal keywords), and the child SA's two SPIs, which appear **crossed**:
    the SPI one side receives on (`in`) is the one the other sends to (`out`).
    """),
    code("""
    left = strongswan_view.rstrip().splitlines()
    right = ipseclab_view.rstrip().splitlines()
    width = max(len(line) for line in left)
    print(f"{'strongSwan on gw2: swanctl --list-sas':{width}} | ipseclab on gw1: ctl list-sas")
    print("-" * width + "-+-" + "-" * 40)
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        print(f"{a:{width}} | {b}")
    """),
    md("""
    ## The same keys on both sides

    Neither side ever sends a key. Each computes SKEYSEED and the SK_* keys from the DH
    secret and the nonces (RFC 7296 §2.14), and the child SA's KEYMAT from SK_d (§2.17).
    If anything differed (an algorithm's key length, the order of the keys in KEYMAT, which
    nonce comes first), the first SK payload would fail its ICV. strongSwan prints its keys
    in its log at level 4; our gateway wrote its own into the key log. They agree.
    """),
    code("""
    (theirs,) = strongswan_keys
    (ours,) = our_ike_keys
    assert (theirs.spi_i, theirs.spi_r) == (ours.spi_i, ours.spi_r)
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert getattr(theirs, name) == getattr(ours, name), name
        print(f"{name}: {getattr(ours, name).hex() or '(none: AES-GCM needs no key)'}")

    our_key_for = {e.spi: e.encryption_key for e in our_esp_keys}
    (child,) = theirs.children
    assert our_key_for[child.spi_in] == child.enc_in  # strongSwan receives, gw1 sends
    assert our_key_for[child.spi_out] == child.enc_out  # strongSwan sends, gw1 receives
    print(f"ESP SPI {child.spi_in:08x}: {child.enc_in.hex()}  (gw1 -> gw2)")
    print(f"ESP SPI {child.spi_out:08x}: {child.enc_out.hex()}  (gw2 -> gw1)")
    """),
    md("""
    ## Your turn 1: crossed SPIs

    strongSwan on gw2 sends its ESP packets on its *outbound* SA. In ipseclab's
    `ctl list-sas` on gw1, is that SPI listed as `"in"` or `"out"`? And which UDP
    destination port do those packets use?
    """),
    code("""
    my_direction = "in"  # your answer: "in" or "out"
    my_port = 4500  # your answer
    """),
    code("""
    ours_line = next(line for line in right if f"{child.spi_out:08x}" in line)
    assert ours_line.split()[0] == my_direction, f"gw1 lists it as: {ours_line.strip()}"
    esp_from_gw2 = [f for f in frames if f.proto == "esp" and f.spi == child.spi_out]
    assert esp_from_gw2 and all(f.udp_encap for f in esp_from_gw2) and my_port == 4500
    print("correct: what one side sends on, the other receives on; ESP in UDP 4500")
    """),
    md("""
    ## Every ESP algorithm, between the two stacks

    One algorithm proves little. The scenario `site-to-site-algorithms` gives h1 17 addresses
    and gw1 one child SA for each, each with exactly one proposal
    (`topologies/configs/site-to-site-algorithms/`): the 16 ESP algorithms both stacks
    implement, and AES-GCM-256 once more with a DH group (ecp256) for its own key exchange.
    gw1 (ipseclab) starts them all on one IKE SA: the first in IKE_AUTH, the others with
    CREATE_CHILD_SA (RFC 7296 §1.3.1). A ping from one of h1's addresses can travel only
    through its own child SA, so a reply proves that algorithm works both ways. The scenario
    judges itself (no ping lost, every SA used, no bad ICV); here we read its capture.
    """),
    code("""
    from ipseclab.capture.keys import sa_from_entry
    from ipseclab.lab.runner import run_scenario

    algo_dir = lab_dir / "algorithms"
    result = run_scenario(TOPOLOGY_DIR / "scenarios" / "site-to-site-algorithms.yaml", algo_dir)
    print(result.table())
    assert result.passed
    """),
    md("""
    Every ping and every reply has the same inner packet (84 bytes), so what each ESP packet
    adds on the wire depends only on its algorithm and on the sender. The key log maps each
    SPI to its SA, and the SA knows its algorithms and their IV and ICV sizes.
    """),
    code("""
    esp_entries = read_esp_sa(keylog_dir_layout(algo_dir)[0])
    sa_of = {e.spi: sa_from_entry(e) for e in esp_entries}
    added = {}  # (algorithm, sender) -> bytes added to one ping or reply
    for f in decode_capture(result.pcaps["wan"], KeyRing(esp_entries)):
        if f.proto == "esp" and f.status == "ok":
            sender = "ipseclab" if f.src == "192.0.2.1" else "strongSwan"
            added[sa_of[f.spi].algorithms, sender] = f.length - len(f.inner_bytes)
    algorithms = list(dict.fromkeys(sa.algorithms for sa in sa_of.values()))
    print(f"{'algorithm':20} {'ipseclab':>9} {'strongSwan':>11}   IV  ICV")
    for name in algorithms:
        sa = next(sa for sa in sa_of.values() if sa.algorithms == name)
        print(f"{name:20} {added[name, 'ipseclab']:9d} {added[name, 'strongSwan']:11d}"
              f"   {sa.encryption.iv_size:2d}  {sa.icv_size:3d}")
    """),
    md("""
    Where those bytes go (RFC 4303 §2, RFC 3948 §2.1): the outer IPv4 header (20) and the UDP
    header of NAT traversal (8, as kernel-libipsec always encapsulates), SPI and sequence
    number (8), the IV, padding with its two trailer bytes (Pad Length, Next Header), and the
    ICV. CBC pads to its 16-byte (3DES: 8-byte) block, counter modes and AEADs only to 4
    bytes (§2.4), and NULL has neither IV nor padding beyond alignment. The black marks are
    strongSwan's packets: the two implementations add exactly the same bytes.
    """),
    code("""
    fig, ax = plt.subplots(figsize=(9, 6))
    parts = ["outer IP + UDP", "SPI + sequence", "IV", "padding + trailer", "ICV"]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for y, name in enumerate(algorithms):
        sa = next(sa for sa in sa_of.values() if sa.algorithms == name)
        iv, icv = sa.encryption.iv_size, sa.icv_size
        sizes = [28, 8, iv, added[name, "ipseclab"] - 28 - 8 - iv - icv, icv]
        left = 0
        for part, size, color in zip(parts, sizes, colors, strict=True):
            ax.barh(y, size, left=left, color=color, label=part if y == 0 else None)
            left += size
        ax.plot(added[name, "strongSwan"], y, "k|", markersize=14, markeredgewidth=2)
    ax.set_yticks(range(len(algorithms)), algorithms)
    ax.invert_yaxis()
    ax.set_xlabel("bytes ESP added to an 84-byte ping (tunnel mode, ESP in UDP)")
    ax.set_title("Every shared ESP algorithm on the wire: ipseclab (bars), strongSwan (|)")
    ax.legend(loc="upper right", fontsize=8)
    plt.tight_layout()
    plt.show()
    """),
    md("""
    ## Your turn 2: the cheapest and the dearest

    Without looking back at the table: which algorithm adds the fewest bytes to the ping,
    and which the most? Reason from the IV, the block the padding fills and the ICV. Then
    say what the cheapest one costs in another currency.
    """),
    code("""
    my_fewest = "aes128gcm8"  # your answer: an algorithm name from the table
    my_most = "aes256-sha512"  # your answer
    """),
    code("""
    fewest = min(algorithms, key=lambda name: added[name, "ipseclab"])
    most = max(algorithms, key=lambda name: added[name, "ipseclab"])
    tied = [name for name in algorithms if added[name, "ipseclab"] == added[fewest, "ipseclab"]]
    assert my_fewest in tied, f"fewest: {', '.join(tied)} ({added[fewest, 'ipseclab']} bytes)"
    assert my_most == most, f"most: {most} ({added[most, 'ipseclab']} bytes)"
    print(f"correct: {', '.join(tied)} add {added[fewest, 'ipseclab']} bytes, {most} adds"
          f" {added[most, 'ipseclab']}: a 16-byte IV, padding to 16 bytes and a 32-byte ICV."
          " null-sha256 is among the cheapest because it encrypts nothing: the ping crossed"
          " the WAN readable (RFC 2410).")
    """),
    cleanup("lab_dir"),
    md("""
    ## Summary

    * One configuration language (swanctl.conf) on both sides; the proposals strongSwan
      and ipseclab negotiate are the same keywords.
    * The handshake between them is the ordinary IKE_SA_INIT + IKE_AUTH (RFC 7296 §1.2);
      unknown status notifies are ignored (§3.10.1), which leaves room for extensions.
    * `swanctl --list-sas` and `ipseclab ctl list-sas` show the same IKE SPIs, identities,
      algorithms and crossed child SA SPIs.
    * Interop is, in the end, equal keys: SK_* from SKEYSEED (§2.14) and KEYMAT (§2.17)
      computed independently by two implementations, byte for byte the same.
    * And equal packets: for each of the 16 ESP algorithms both implement, the two stacks
      read each other's packets and add the same bytes (IV, padding, ICV) to the same ping.
    """),
]
