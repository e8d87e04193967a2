"""swanctl's updown scripts: the environment strongSwan's _updown reads, and the runner.

The lab test (a script that writes down what it was given while a child SA comes and goes)
is in tests/test_ike_gateway.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ipseclab.drivers.ike_updown import UpdownRunner, updown_environment
from ipseclab.ipsec.selectors import TrafficSelector


def env(**kw) -> dict[str, str]:
    args = dict(child="net", reqid=3, interface="ipsec0", ike_sa="ab" * 16,
                me=("192.0.2.1", 4500), peer=("192.0.2.2", 4500), my_id="moon",
                peer_id="sun", my_ts=TrafficSelector.parse("10.1.0.0/24"),
                peer_ts=TrafficSelector.parse("10.2.0.0/24[tcp/80]"))
    args.update(kw)
    return updown_environment(True, **args)


def test_the_environment_has_strongswans_names_and_formats() -> None:
    e = env(nat=True, hostaccess=True, my_sourceips=["10.3.0.1"])
    assert e["PLUTO_VERB"] == "up-client" and e["PLUTO_CONNECTION"] == "net"
    assert (e["PLUTO_ME"], e["PLUTO_PEER"]) == ("192.0.2.1", "192.0.2.2")
    assert (e["PLUTO_MY_ID"], e["PLUTO_PEER_ID"]) == ("moon", "sun")
    assert (e["PLUTO_MY_CLIENT"], e["PLUTO_PEER_CLIENT"]) == ("10.1.0.0/24", "10.2.0.0/24")
    assert (e["PLUTO_MY_PORT"], e["PLUTO_MY_PROTOCOL"]) == ("0", "0")
    assert (e["PLUTO_PEER_PORT"], e["PLUTO_PEER_PROTOCOL"]) == ("80", "6")
    assert e["PLUTO_REQID"] == "3" and e["PLUTO_INTERFACE"] == "ipsec0"
    assert e["PLUTO_UDP_ENC"] == "4500" and e["PLUTO_HOST_ACCESS"] == "1"
    assert e["PLUTO_MY_SOURCEIP"] == "10.3.0.1" and "PLUTO_PEER_SOURCEIP" not in e
    assert "PLUTO_UDP_ENC" not in env() and "PLUTO_HOST_ACCESS" not in env()
    # our own IKE address as selector: a host; IPv6 selectors: -v6
    assert env(my_ts=TrafficSelector.parse("192.0.2.1/32"))["PLUTO_VERB"] == "up-host"
    v6 = env(me=("2001:db8::1", 500), peer=("2001:db8::2", 500),
             my_ts=TrafficSelector.parse("2001:db8:1::/64"),
             peer_ts=TrafficSelector.parse("2001:db8:2::/64"))
    assert v6["PLUTO_VERB"] == "up-client-v6" and v6["PLUTO_MY_CLIENT"] == "2001:db8:1::/64"
    # a range that is no subnet: its first subnet, as strongSwan passes it
    ranged = env(my_ts=TrafficSelector.parse("10.1.0.1-10.1.0.6"))
    assert ranged["PLUTO_MY_CLIENT"] == "10.1.0.1/32"


def test_the_runner_runs_in_order_kills_what_hangs_and_logs(tmp_path: Path, caplog) -> None:
    out = tmp_path / "calls"
    script = f'echo "$PLUTO_VERB $PLUTO_MY_CLIENT" >> {out}; echo said $PLUTO_VERB'

    async def main() -> None:
        runner = UpdownRunner(timeout=0.5)
        runner.submit(script, env())
        runner.submit("sleep 30", env())  # killed after 0.5 s
        runner.submit(script, {**env(), "PLUTO_VERB": "down-client"})
        runner.submit("exit 3", env())
        await asyncio.wait_for(runner.drain(), 10)
        runner.submit(script, {**env(), "PLUTO_VERB": "up-again"})  # runs on close()
        runner.close()

    with caplog.at_level(logging.INFO, logger="ipseclab.ike"):
        asyncio.run(main())
    assert out.read_text().splitlines() == ["up-client 10.1.0.0/24", "down-client 10.1.0.0/24",
                                            "up-again 10.1.0.0/24"]
    text = caplog.text
    assert "updown up-client: said up-client" in text
    assert "killed after 0.5s" in text and "exit status 3" in text
