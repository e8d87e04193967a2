"""Who owns which SPD entry, when IKE installs policies the SPD can hold only once.

The SPD keeps one entry per selector and direction (RFC 4301 §4.4.1, and so does Linux xfrm),
yet several owners may want the same one: a trap (``start_action=trap``, RFC 4301 §5.1 step
3) and the child SA it brought up; two child SAs of a duplicate negotiation; a child SA and
the manual entry it replaces. :class:`PolicyBook` remembers every wish and keeps the winner
installed, so that when an owner goes, the next one's entry comes back instead of a hole.
:func:`policy_priority` orders the entries most specific first, as strongSwan does.
"""

from __future__ import annotations

import contextlib
import logging

from ipseclab.ipsec.selectors import Selector
from ipseclab.ipsec.spd import Policy

__all__ = ["PolicyBook", "policy_priority"]

log = logging.getLogger("ipseclab.ike")


class PolicyBook:
    """Who wants which SPD entry: child SAs (by reqid) and traps, per (direction, selector).

    The SPD holds one entry per selector and direction (as xfrm does), so when two owners
    want the same one (a trap and the child SA it started, or two child SAs of a duplicate
    negotiation), the newest child SA wins, then a trap; when an owner goes, the next one's
    entry is put back.
    """

    def __init__(self, spd) -> None:
        self.spd = spd
        self._wants: dict[tuple[str, Selector], dict[object, Policy]] = {}
        self._installed: dict[tuple[str, Selector], tuple[object, Policy]] = {}

    def add(self, owner: object, policies: list[Policy]) -> None:
        for policy in policies:
            key = (str(policy.direction), policy.selector)
            wants = self._wants.setdefault(key, {})
            wants.pop(owner, None)
            wants[owner] = policy
            self._settle(key)

    def remove(self, owner: object) -> None:
        for key, wants in list(self._wants.items()):
            if wants.pop(owner, None) is not None:
                if not wants:
                    del self._wants[key]
                self._settle(key)

    def owners(self) -> set[object]:
        return {o for wants in self._wants.values() for o in wants}

    def _settle(self, key: tuple[str, Selector]) -> None:
        wants = self._wants.get(key, {})
        chosen = None
        for owner, policy in wants.items():  # insertion order: the last child SA wins
            if not isinstance(owner, str) or chosen is None or isinstance(chosen[0], str):
                chosen = (owner, policy)
        current = self._installed.get(key)
        if current is not None and chosen is not None and current[1] is chosen[1]:
            return
        if current is not None:
            with contextlib.suppress(KeyError):
                self.spd.remove(current[1])
            del self._installed[key]
        if chosen is None:
            return
        old = self.spd.find(key[1], key[0])
        if old is not None:  # a manual entry for the same traffic: the negotiated one wins
            self.spd.remove(old)
            log.warning("policy %s dir %s replaced by IKE's", key[1], key[0])
        self.spd.add(chosen[1])
        self._installed[key] = chosen



def policy_priority(selector: Selector) -> int:
    """More specific selectors first (lower number), as strongSwan orders its policies."""
    width = sum((ts.end - ts.start).bit_length() for ts in (selector.local, selector.remote))
    return 1000 + width - (8 if selector.proto else 0)
