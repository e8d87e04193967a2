"""The cells the attack lessons 08a-08h share: the scope statement, their root check (lab
cells skip themselves without root, unlike ``cells.ROOT_CHECK`` which stops the lesson),
and small helpers for captures, lab configurations and in-memory IKE engines."""

from __future__ import annotations

from .cells import code, md


def scope(what: str):
    """The statement every attack notebook makes about whom it attacks."""
    return md(f"""
    **Scope: the lab only.** {what} The attacks in this notebook target only the lab's own
    hosts inside the topology: `h1`, `gw1`, `mallory`, `gw2` and `h2` are network namespaces
    on this machine (`topologies/on-path-attacker.yaml`), with addresses from private and
    documentation ranges that are never routed out of them. The keys are lab keys, published
    in `topologies/attacks/`. Never point these tools at networks you do not own.

        h1 --[lan1]-- gw1 --[wan1]-- mallory --[wan2]-- gw2 --[lan2]-- h2
        10.1.0.10     192.0.2.1    192.0.2.254 / 198.51.100.254    198.51.100.2   10.2.0.10
    """)


ROOT_CHECK = code("""
    import os

    ROOT = os.geteuid() == 0
    NOT_ROOT = ("lab cell skipped: the lab builds network namespaces and needs root. Run Jupyter"
                " as root (e.g. sudo) to see the attack on the wire; all other cells still run.")
    print("running as root: the lab cells start the on-path-attacker topology" if ROOT
          else "not root: the lab cells will say they are skipped; the rest runs as usual")
    """)

IP_PACKETS = code("""
    from ipseclab.capture.pcap import ip_payload, read_capture


    def ip_packets(pcap, proto: int) -> list[bytes]:
        \"\"\"The IPv4 packets of IP protocol ``proto`` (50 ESP, 51 AH, 1 ICMP) in a capture.\"\"\"
        found = (ip_payload(f.linktype, f.data) for f in read_capture(pcap))
        return [p for p in found if p and p[0] >> 4 == 4 and p[9] == proto]
    """)

SHOW_CONFIG = code("""
    import re

    from ipseclab.attacks.common import config_dir


    def show_config(attack: str, config: str, node: str = "gw2", what: str = "state") -> None:
        \"\"\"The ``ip xfrm state`` (or ``policy``) commands of one gateway, long keys cut.\"\"\"
        path = config_dir(attack, config) / f"{node}.xfrm"
        lines = path.read_text().splitlines()
        print(f"{config}: {lines[0].lstrip('# ')}")
        body = " ".join(line for line in lines if not line.startswith("#"))
        for command in body.replace(chr(92), " ").split("ip xfrm ")[1:]:
            if command.startswith(what):
                line = re.sub(r"0x[0-9a-f]{12,}", lambda m: m[0][:12] + "...", command)
                print("    ip xfrm", " ".join(line.split()))
    """)


IKE_ENGINES = code("""
    from ipseclab.config.swanctl import load_swanctl
    from ipseclab.crypto import kdf
    from ipseclab.ike import events
    from ipseclab.ike.engine import IkeEngine

    GW1, GW2 = ("192.0.2.1", 500), ("198.51.100.2", 500)  # the WAN addresses, UDP 500


    def engine(swanctl, **options):
        \"\"\"An in-memory IKE engine with the connections of one swanctl.conf (sans-IO:
        datagrams in, datagrams and events out; nothing is sent anywhere).\"\"\"
        return IkeEngine(list(load_swanctl(swanctl).connections.values()),
                         cookie_threshold=None, **options)


    def all_keys(ev):
        \"\"\"The seven SK_* keys (RFC 7296 §2.14) from an IkeSaKeysDerived event.\"\"\"
        return kdf.IkeKeys(SK_d=ev.sk_d, SK_ai=ev.sk_ai, SK_ar=ev.sk_ar, SK_ei=ev.sk_ei,
                           SK_er=ev.sk_er, SK_pi=ev.sk_pi, SK_pr=ev.sk_pr)
    """)
