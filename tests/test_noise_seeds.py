"""Simulated noise is new in every process unless the YAML fixes a seed (issue 20, item 6)."""
from __future__ import annotations

from bliss_lite.config import Config
from bliss_lite.config.settings import SettingsStore
from tests.conftest import CONFIG_DIR, write_config


def first_values(config, name, n=6):
    counter = config.get(name)
    return [counter.read(0.01) for _ in range(n)]


def test_the_shipped_monitors_and_counters_are_not_the_same_in_every_process(run_dir):
    one, two = Config(CONFIG_DIR, SettingsStore(run_dir)), Config(CONFIG_DIR, SettingsStore(run_dir))
    assert one.get("xrdct_sample").seed is None
    assert first_values(one, "i0") != first_values(two, "i0")  # Poisson I0: new draws per process
    assert first_values(one, "xtal") != first_values(two, "xtal")


def test_a_seed_in_the_yaml_repeats_the_noise(run_dir, tmp_path):
    text = ("- {name: d, class: simulation_diode, mean: 100, noise: 0.1, seed: 3}\n"
            "- {name: e, class: simulation_diode, mean: 100, noise: 0.1}\n")
    root = write_config(tmp_path / "cfg", {"c.yml": text})
    one, two = Config(root, SettingsStore(run_dir)), Config(root, SettingsStore(run_dir))
    assert first_values(one, "d") == first_values(two, "d")
    assert first_values(one, "e") != first_values(two, "e")
    first, second = Config(CONFIG_DIR, SettingsStore(run_dir)), Config(CONFIG_DIR, SettingsStore(run_dir))
    first.get("xrdct_sample").reseed(5)
    second.get("xrdct_sample").reseed(5)
    assert first_values(first, "i0") == first_values(second, "i0")
