"""Lesson 08h, downgrade: what an on-path attacker can change in IKE_SA_INIT. Stripping
proposals fails on AUTH (RFC 7296 §2.15); a forged INVALID_KE_PAYLOAD (§1.2, §1.3) moves
peers that both accept modp1024 there; ``ipseclab probe`` as the defender's audit; the fix.
"""

from __future__ import annotations

from .attack_cells import ROOT_CHECK, scope
from .cells import code, md

CELLS = [
    md("""
    # 08h: Downgrade, pushing IKEv2 towards a weak group

    **Learning goals.** After this lesson you can

    * say what an on-path attacker can read, change, drop and forge in IKE_SA_INIT, the
      one IKEv2 exchange that no key protects yet (RFC 7296 §1.2);
    * explain why stripping the strong proposals fails (AUTH covers each side's own first
      message as sent, §2.15), while a forged INVALID_KE_PAYLOAD (§1.2, §1.3) works against
      two peers that both still accept a weak group;
    * audit a gateway with `ipseclab probe` and read which groups it would accept, with
      the levels of RFC 8247;
    * fix the configuration so that there is nothing weak to fall back to.

    Only the cells marked *lab* need root; the rest runs two IKE engines in memory.
    """),
    scope("mallory, the router between the two sites, rewrites, drops and forges IKE_SA_INIT"
          " messages between gw1 and gw2. It knows neither the PSK nor any key."),
    ROOT_CHECK,
    md("""
    ## The two configurations

    Both gateways authenticate with the same PSK. In the weak configuration each also
    still accepts an old proposal beside x25519: AES-CBC, SHA-1 and modp1024, a 1024-bit
    MODP group (RFC 8247 §2.4: SHOULD NOT). The first proposal is the preferred one.
    """),
    code("""
    from ipseclab.attacks.common import config_dir

    for config in ("weak", "recommended"):
        conf = (config_dir("downgrade", config) / "gw1.swanctl.conf").read_text()
        print(f"{config:12}", next(line.strip() for line in conf.splitlines()
                                   if line.strip().startswith("proposals")))
    """),
    md("""
    What to notice: the weak list starts with the same strong proposal as the recommended
    one. Left alone, the peers agree on x25519 in both configurations; the question is
    whether mallory can make them pick the second proposal.

    ## What IKE_SA_INIT carries

    gw1 sends its proposals (SA), a key share (KE) for the group it guesses gw2 will pick,
    and a nonce; gw2 answers with its choice, its key share and its nonce. No key exists
    yet, so nothing in these two messages is encrypted or integrity-protected (§1.2): an
    on-path attacker reads every octet and can change any of them. The helper `show` prints
    the IKE_SA_INIT messages as they were *delivered*, then what each gateway reported.
    """),
    code("""
    from ipseclab.attacks import downgrade
    from ipseclab.attacks.ike_common import engine_pair, run_pair
    from ipseclab.ike import events
    from ipseclab.ike.constants import ExchangeType, ProtocolId
    from ipseclab.ike.message import parse_message
    from ipseclab.ike.negotiation import describe_offer
    from ipseclab.ike.payloads import KeyExchange, Notify, SecurityAssociation


    def summary(data: bytes) -> str:
        \"\"\"One IKE_SA_INIT message in a line: size, proposals, KE group, error notifies.\"\"\"
        msg = parse_message(data)
        sa, ke = msg.find(SecurityAssociation), msg.find(KeyExchange)
        parts = [f"SA[{describe_offer(sa, ProtocolId.IKE)}]"] if sa else []
        parts += [f"KE(group {ke.group})"] if ke else []
        parts += [f"N({n.notify_type.name} {int.from_bytes(n.data, 'big')})"
                  for n in msg.payloads if isinstance(n, Notify) and n.is_error]
        return f"{len(data):3} octets: " + ", ".join(parts)


    def show(wire) -> None:
        \"\"\"The IKE_SA_INIT messages as delivered, then the gateways' outcome.\"\"\"
        for sender, data in wire.messages:
            if parse_message(data).exchange_type == ExchangeType.IKE_SA_INIT:
                print("gw1 -> gw2" if sender == "gw1" else "gw1 <- gw2", summary(data))
        for node, evs in wire.events.items():
            for ev in evs:
                if isinstance(ev, events.IkeSaEstablished):
                    print(f"{node}: IKE SA up with {ev.proposal}")
                elif isinstance(ev, (events.AuthenticationFailed, events.NegotiationFailed)):
                    print(f"{node}: failed: {ev.reason}")


    honest = run_pair(engine_pair("downgrade", "weak"))  # no attacker
    show(honest)
    """),
    md("""
    What to notice: gw1 offers both proposals with a key share for group 31 (x25519);
    gw2 takes the first, and both IKE SAs use `aes256gcm16-prfsha384-x25519`. Group 2
    (modp1024) is named only inside the second proposal.

    ## Attempt 1: strip the strong proposal

    mallory removes gw1's first proposal from the request in flight
    (`downgrade.strip_first_proposal`), so gw2 can only choose modp1024. We also keep
    every message as gw1 *sent* it, to compare with what gw2 received.
    """),
    code("""
    def recording(tamper):
        \"\"\"``tamper``, keeping each message as its sender sent it (before mallory).\"\"\"
        sent = []

        def wrapper(data: bytes, sender: str) -> list:
            sent.append((sender, data))
            return tamper(data, sender)

        return wrapper, sent


    tamper, sent = recording(downgrade.strip_first_proposal)
    stripped = run_pair(engine_pair("downgrade", "weak"), tamper)
    show(stripped)
    """),
    md("""
    What to notice: the strip nearly works. gw2 sees only modp1024, answers
    INVALID_KE_PAYLOAD naming group 2, gw1 retries with a modp1024 key share, mallory
    strips again, and gw2 chooses modp1024. Then IKE_AUTH fails on both sides.

    ## Why AUTH fails: each side signs its own first message (§2.15)

    gw1's AUTH covers `RealMessage1`, its IKE_SA_INIT request *exactly as it sent it*,
    followed by gw2's nonce and a MAC of its identity (lesson 08f wrote this out for a
    PSK). gw2 computes the same value over the request *it received*. mallory cannot fix
    AUTH: it does not know the PSK, and IKE_AUTH is encrypted with keys it does not have.
    """),
    code("""
    def init_requests(messages) -> list[bytes]:
        return [d for s, d in messages if s == "gw1"
                and parse_message(d).exchange_type == ExchangeType.IKE_SA_INIT]


    as_sent, as_received = init_requests(sent)[-1], init_requests(stripped.messages)[-1]
    print("gw1 signs the request it sent:    ", summary(as_sent))
    print("gw2 checks the request it received:", summary(as_received))
    print("the same octets:", as_sent == as_received)
    assert as_sent != as_received
    """),
    md("""
    What to notice: 364 octets signed, 328 checked. The two differ by one proposal, so the
    two AUTH computations cannot agree, whatever mallory does. Any change to the request
    (or to gw2's response, which gw2 signs the same way) ends in AUTHENTICATION_FAILED.
    mallory can stop the exchange, but this way it cannot weaken it.

    ## Attempt 2: forge INVALID_KE_PAYLOAD

    gw1 has to *guess* which group gw2 wants when it sends its key share. If the guess is
    wrong, the responder answers with an INVALID_KE_PAYLOAD notify (type 17, §3.10.1)
    naming the group it prefers, and the initiator sends IKE_SA_INIT again with a key share
    in that group (§1.2, §1.3). That answer creates no IKE SA, so nobody signs it.

    mallory drops gw1's first request and answers it itself, from gw2's address:
    "INVALID_KE_PAYLOAD, use group 2" (`downgrade.forge_invalid_ke`). gw2 never sees the
    first request.
    """),
    code("""
    from ipseclab.crypto import dh

    weak_id = dh.dh_group("modp1024").iana_id
    forged = run_pair(engine_pair("downgrade", "weak"), downgrade.forge_invalid_ke(weak_id))
    show(forged)
    downgraded = [ev.proposal for evs in forged.events.values() for ev in evs
                  if isinstance(ev, events.IkeSaEstablished)]
    assert downgraded == ["aes128-sha1-prfsha1-modp1024"] * 2
    """),
    md("""
    What to notice: the first line is mallory's 38-octet forgery; gw1 believes it is gw2.
    gw1 retries with both proposals still offered but a key share for group 2, so gw2 picks
    the proposal that matches it: `aes128-sha1-prfsha1-modp1024`. This time the request gw2
    received is the one gw1 sent, both AUTH values verify, and both IKE SAs are up in the
    weak group. AUTH protects what the peers *said*, not what they *would have preferred*.

    ## The defender's audit: which groups does gw2 accept?

    The attack needs a weak group that *both* peers accept. An administrator can find out
    without a handshake: `ipseclab probe` asks a responder about one algorithm per
    IKE_SA_INIT request, with a key share for a decoy group no one implements, so gw2
    answers INVALID_KE_PAYLOAD (accepted) or NO_PROPOSAL_CHOSEN (refused) and keeps no
    state (§1.2). Here the DH groups only, against an in-memory gw2 of each configuration.
    """),
    code("""
    from ipseclab.drivers.ike_probe import format_report
    from ipseclab.ike.probe import Prober, candidates


    def probe_in_memory(config: str):
        \"\"\"Probe the DH groups of an in-memory gw2; returns the prober and gw2.\"\"\"
        gw2 = engine_pair("downgrade", config)["gw2"]
        prober, t = Prober(candidates(["dh"]), full=False), 0.0
        while True:
            request, wake = prober.poll(t)  # what to send now, and when to ask again
            if wake is None:
                return prober, gw2
            if request is None:
                t = wake
                continue
            gw2.receive_datagram(request, ("192.0.2.1", 500), ("198.51.100.2", 500), t)
            for answer, _, _ in gw2.datagrams_to_send():
                prober.receive(answer, t)


    for config in ("weak", "recommended"):
        prober, gw2 = probe_in_memory(config)
        print(format_report(prober, f"gw2 ({config}, in memory)"))
        print("  IKE SAs gw2 holds afterwards:", len(gw2.ike_sas), end="\\n\\n")
    """),
    md("""
    What to notice: the weak gw2 accepts `modp1024 (SHOULD NOT)` beside `x25519 (SHOULD)`,
    and the report names it under *weak*. The recommended gw2 accepts x25519 only. Both
    hold no IKE SA after the questions.

    ## The audit and the attack in the lab (root)

    Now on the wire, in the `on-path-attacker` lab with gateways running IKEv2
    (`impl: ipseclab`). First the audit: the command-line tool, run inside gw1's namespace
    against gw2's WAN address (`--no-full`: questions only, no half-open IKE SA). Then
    `downgrade.run(lab)`: mallory's relay diverts the IKE datagrams between gw1 and gw2
    and tries both attacks; the evidence comes from the gateways' logs and
    `ctl list-ike-sas`. The lab's files go to a temporary directory removed afterwards.
    """),
    code("""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ipseclab.attacks.ike_common import GW2, ike_lab


    def audit_and_attack(config: str):
        \"\"\"The lab with ``config``: gw1 probes gw2, then mallory tries the downgrade.\"\"\"
        command = [sys.executable, "-m", "ipseclab", "probe", GW2, "--no-full"]
        with (tempfile.TemporaryDirectory(prefix="nb08h-") as tmp,
              ike_lab("downgrade", config, Path(tmp) / "lab") as lab):
            proc = lab.node("gw1").popen(command, "probe", stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            report = proc.communicate(timeout=60)[0].decode()
            result = downgrade.run(lab, config=config)
        print(f"gw1# ipseclab probe {GW2} --no-full")
        print(report)
        print(result.report())
        return report, result


    if ROOT:
        weak_report, weak = audit_and_attack("weak")
        assert "modp1024 (SHOULD NOT)" in weak_report and weak.succeeded
    else:
        print(NOT_ROOT)
    """),
    md("""
    What to notice: the probe asks 61 questions; gw2 accepts `modp1024 (SHOULD NOT)` and
    `x25519 (SHOULD)`, and also SHA-1 for integrity and PRF (`MUST-`: still allowed,
    on its way out). Then the attack: mallory stripped 2 requests (the first and gw1's
    retry), and the strip ends in `authentication failed` on both gateways (counter
    `auth_failed 2`); the forged notify leaves one IKE SA in
    `aes128-sha1-prfsha1-modp1024` on each (`downgraded_sas 2`). gw2 received only 2 IKE
    messages in that attempt (`gw2_ike_in 2`): it never saw gw1's first request.

    ## The fix fails the attack

    The recommended configuration offers x25519 in every proposal: nothing weak to fall
    back to. In memory, the same forgery first; then the lab.
    """),
    code("""
    refused = run_pair(engine_pair("downgrade", "recommended"),
                       downgrade.forge_invalid_ke(weak_id))
    show(refused)
    assert not any(isinstance(ev, events.IkeSaEstablished)
                   for evs in refused.events.values() for ev in evs)
    """),
    md("""
    What to notice: gw1 refuses a group it never offered. The exchange stops (an on-path
    attacker can always do that, by dropping packets), but no IKE SA comes up in a weak
    group. gw1 will try again later, and as long as mallory forges, it fails again.
    """),
    code("""
    if ROOT:
        fixed_report, fixed = audit_and_attack("recommended")
        assert "modp1024" not in fixed_report.split("DH group:")[1].split("refuses")[0]
        assert not fixed.succeeded and not fixed.details["forged_invalid_ke"]["established"]
    else:
        print(NOT_ROOT)
    """),
    md("""
    What to notice: the probe now shows `accepts x25519 (SHOULD)` alone among the DH
    groups, and *weak: none*. The strip still fails on AUTH; the forged notify ends
    with gw1 "responder wants DH group 2, which we cannot use", and `ctl list-ike-sas`
    shows no IKE SA on either gateway.

    ## Your turn 1: which group to name?

    mallory's forged notify names one DH group. Which IANA group number must it name to
    downgrade the weak pair? (Naming, say, 14, modp2048, fails: gw1 never offered it.)
    """),
    code("""
    my_group = 2  # your answer: the group number in the forged INVALID_KE_PAYLOAD
    """),
    code("""
    mine = run_pair(engine_pair("downgrade", "weak"), downgrade.forge_invalid_ke(my_group))
    up = [ev.proposal for evs in mine.events.values() for ev in evs
          if isinstance(ev, events.IkeSaEstablished)]
    assert up and all("modp1024" in p for p in up), f"with group {my_group}: {up or 'no IKE SA'}"
    print(f"correct: group {my_group} is {dh.dh_group('modp1024').keyword}; both IKE SAs:", up[0])
    """),
    md("""
    ## Your turn 2: fix one side only

    The administrator of gw2 read the probe report and switched gw2 to the recommended
    proposals; gw1 still has the weak ones (x25519 and modp1024). mallory forges
    INVALID_KE_PAYLOAD(2) as before. Does an IKE SA come up in modp1024?
    """),
    code("""
    my_downgraded = False  # your answer: True if the pair still ends up in modp1024
    """),
    code("""
    mixed = engine_pair("downgrade", "weak")
    mixed["gw2"] = engine_pair("downgrade", "recommended")["gw2"]
    wire = run_pair(mixed, downgrade.forge_invalid_ke(weak_id))
    show(wire)
    up = [ev.proposal for evs in wire.events.values() for ev in evs
          if isinstance(ev, events.IkeSaEstablished)]
    assert my_downgraded == any("modp1024" in p for p in up), f"the IKE SAs: {up}"
    print("correct: gw2 chose the x25519 proposal, answered INVALID_KE_PAYLOAD(31) for real,"
          " and gw1 retried in x25519")
    """),
    md("""
    What to notice: gw1 retried with a modp1024 key share, but gw2 no longer accepts any
    proposal with modp1024, so it picked the x25519 proposal and asked for group 31 itself.
    The forgery cost one round trip and nothing else: the weak group must be acceptable to
    *both* peers, so a probe of either one finds the hole and fixing either one closes it
    for this pair (fix both: each has other peers).

    ## Summary

    * IKE_SA_INIT is neither encrypted nor integrity-protected: no key exists yet
      (RFC 7296 §1.2). An on-path attacker reads it, and can drop, change or forge messages.
    * Changing a message fails: AUTH covers each side's own IKE_SA_INIT message as it sent
      it (§2.15), so a stripped proposal list ends in AUTHENTICATION_FAILED.
    * Forging an answer works: INVALID_KE_PAYLOAD (§1.2, §1.3; type 17, §3.10.1) is not
      signed, and the retried request is genuine, so AUTH verifies. Peers that both still
      accept modp1024 (RFC 8247 §2.4: SHOULD NOT) end up in it.
    * AUTH protects what the peers said, not what they would accept. Audit what a gateway
      accepts (`ipseclab probe ADDRESS`, only for gateways you may test) and configure only
      proposals you are content to end up with: here x25519 alone; then the attacker can
      only stop the exchange, not weaken it.
    """),
]
