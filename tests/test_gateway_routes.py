"""The ``src`` of the gateway's TUN routes (:mod:`ipseclab.drivers.gateway_routes`).

Without namespaces: :meth:`GatewayRoutes._route_source` takes the policy and the set of our
addresses. The IPv6-over-IPv4 and IPv4-over-IPv6 tunnels of ``test_gateway.py`` against
charon are the end-to-end check.
"""

from __future__ import annotations

import pytest

from ipseclab.drivers.gateway_routes import GatewayRoutes
from ipseclab.ipsec.selectors import Selector, TrafficSelector
from ipseclab.ipsec.spd import Policy, Template

MINE = {"192.0.2.1", "2001:db8::1", "10.1.0.1", "fd01::1", "127.0.0.1", "::1"}


def tunnel(local: str, remote: str, outer: tuple[str, str]) -> Policy:
    return Policy(Selector(TrafficSelector.parse(local), TrafficSelector.parse(remote)), "out",
                  "protect", templates=[Template("esp", "tunnel", *outer)])


@pytest.mark.parametrize(("local", "remote", "outer", "src"), [
    # The regression: the IPv4 tunnel endpoint was the src of an IPv6 route, which ip
    # refused ("inet6 address is expected"), so IPv6 inside IPv4 had no route at all.
    ("fd01::/64", "fd02::/64", ("192.0.2.1", "192.0.2.2"), "fd01::1"),
    ("10.1.0.0/24", "10.2.0.0/24", ("2001:db8::1", "2001:db8::2"), "10.1.0.1"),
    # Same family: our address inside the local selector first (as strongSwan), so that
    # the gateway's own packets to the remote LAN match the policy ...
    ("10.1.0.0/24", "10.2.0.0/24", ("192.0.2.1", "192.0.2.2"), "10.1.0.1"),
    ("fd01::/64", "fd02::/64", ("2001:db8::1", "2001:db8::2"), "fd01::1"),
    # ... and the tunnel endpoint when we have none there.
    ("10.9.0.0/24", "10.2.0.0/24", ("192.0.2.1", "192.0.2.2"), "192.0.2.1"),
])
def test_route_source_is_of_the_inner_family(local, remote, outer, src):
    assert GatewayRoutes._route_source(tunnel(local, remote, outer), MINE) == src


def test_no_address_of_the_inner_family_leaves_the_choice_to_the_kernel():
    policy = tunnel("fd07::/64", "fd02::/64", ("192.0.2.1", "192.0.2.2"))
    assert GatewayRoutes._route_source(policy, MINE) is None


def test_transport_mode_keeps_the_selectors_own_address():
    policy = Policy(Selector(TrafficSelector.parse("192.0.2.1"), TrafficSelector.parse(
        "192.0.2.2")), "out", "protect", templates=[Template("esp", "transport")])
    assert GatewayRoutes._route_source(policy, MINE) == "192.0.2.1"
