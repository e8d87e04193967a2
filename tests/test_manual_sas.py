"""Generated hub-and-spoke manual SAs: consistent on both ends, one key per SA, shipped as made."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipseclab.config import xfrm
from ipseclab.errors import ConfigError
from ipseclab.lab.manual_sas import hub_and_spoke_xfrm, write_hub_and_spoke_scenario
from ipseclab.lab.scenario import load_scenario
from ipseclab.lab.topology import TOPOLOGY_DIR


def load(text: str, tmp_path: Path, name: str) -> xfrm.ManualConfig:
    path = tmp_path / f"{name}.xfrm"
    path.write_text(text)
    return xfrm.load(path)


def test_shipped_configs_are_the_generated_ones() -> None:
    shipped = TOPOLOGY_DIR / "configs" / "hub-and-spoke"
    for node, text in hub_and_spoke_xfrm(3).items():
        assert (shipped / f"{node}.xfrm").read_text() == text, node


@pytest.mark.parametrize("spokes", [1, 3, 8])
def test_both_ends_hold_the_same_sas_with_distinct_keys(spokes: int, tmp_path: Path) -> None:
    configs = {n: load(t, tmp_path, n) for n, t in hub_and_spoke_xfrm(spokes).items()}
    hub = {(sa.spi, str(sa.src), str(sa.dst)): sa.encryption_key for sa in configs["hub"].states}
    assert len(hub) == 2 * spokes
    assert len(set(hub.values())) == 2 * spokes  # a key of its own for every SA
    for i in range(1, spokes + 1):
        spoke = configs[f"spoke{i}"]
        for sa in spoke.states:
            assert hub[(sa.spi, str(sa.src), str(sa.dst))] == sa.encryption_key
            assert sa.algorithms.startswith("aes128gcm16") and str(sa.mode) == "tunnel"
        # The hub's LAN and every other spoke's LAN, each with out, in and fwd.
        assert len(spoke.policies) == 3 * spokes
        assert len(configs["hub"].policies) == 3 * spokes * spokes


def test_generated_scenario_loads(tmp_path: Path) -> None:
    scenario = load_scenario(write_hub_and_spoke_scenario(4, tmp_path))
    assert scenario.topology.name == "hub-and-spoke-4"
    assert {n for n, g in scenario.gateways.items() if g.impl == "ipseclab"} == {
        "hub", "spoke1", "spoke2", "spoke3", "spoke4"}
    assert [c.args["gateway"] for c in scenario.checks if c.kind == "sa_counters"] == [
        "hub", "spoke1", "spoke2", "spoke3", "spoke4"]


def test_spoke_count_is_bounded() -> None:
    with pytest.raises(ConfigError):
        hub_and_spoke_xfrm(0)
