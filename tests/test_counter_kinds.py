"""Sampling and integrating counters (issue 20, item 1): what they read, in which unit, in
every mode, from the YAML and at run time, in scans, files, Redis and `ct`."""
from __future__ import annotations

import logging
import time

import h5py
import numpy as np
import pytest

from bliss_lite.config import Config, ConfigError
from bliss_lite.config.settings import SettingsStore
from bliss_lite.controllers.counters.kinds import INTEGRATING, SAMPLING, SamplingMode, integrates, kind_of
from bliss_lite.data.client import ScanReader
from bliss_lite.data.redis_server import connect
from tests.conftest import CONFIG_DIR, write_config

AXIS = "- class: mockup\n  name: ctl\n  axes:\n    - {name: m, steps_per_unit: 100, velocity: 100, acceleration: 1000}\n"


def build(tmp_path, run_dir, text, name):
    root = write_config(tmp_path / "cfg", {"a.yml": AXIS, "c.yml": text})
    return Config(root, SettingsStore(run_dir)).get(name)


def test_a_sampled_current_reads_its_value_whatever_the_count_time(tmp_path, run_dir):
    current = build(tmp_path, run_dir, "- {name: cur, class: simulation_diode, mean: 200, noise: 0.001, "
                    "unit: mA}\n", "cur")
    assert kind_of(current) == SAMPLING and current.mode == SamplingMode.MEAN and not integrates(current)
    for t in (0.0, 0.05, 0.2, 1.0):
        assert current.read(t) == pytest.approx(200.0, rel=0.005)
    assert [(c.name, c.unit) for c in current.channels()] == [("cur", "mA")]


def test_every_sampling_mode(tmp_path, run_dir):
    diode = build(tmp_path, run_dir, "- {name: d, class: simulation_diode, mean: 100, noise: 0.1, seed: 4, "
                  "mode: max}\n", "d")
    assert diode.mode == SamplingMode.MAX  # from the YAML, any case
    assert diode.read(0.5) > 120  # the largest of 500 samples of 10 % noise: >2 sigma above
    diode.mode = "MIN"  # settable at run time
    assert diode.read(0.5) < 80
    diode.mode = SamplingMode.LAST
    assert 50 < diode.read(0.5) < 150
    diode.mode = "INTEGRATE"  # mean x count time: unit*s
    assert diode.read(2.0) == pytest.approx(200.0, rel=0.02) and diode.channels()[0].unit == "s"
    diode.mode = "STATS"
    values = diode.read_channels(0.2)
    assert set(values) == {"d", "d_std", "d_min", "d_max", "d_N"}
    assert values["d_N"] == 200 and values["d_min"] < values["d"] < values["d_max"]
    assert values["d"] == pytest.approx(100, rel=0.03) and values["d_std"] == pytest.approx(10, rel=0.2)
    assert diode.read(0.2) == pytest.approx(100, rel=0.03)  # read(): the mean
    assert [c.name for c in diode.channels()] == ["d", "d_std", "d_min", "d_max", "d_N"]
    with pytest.raises(ValueError, match="d: mode must be one of MEAN, LAST, MIN, MAX, STATS, INTEGRATE, got 'avg'"):
        diode.mode = "avg"
    assert diode.mode == SamplingMode.STATS  # a refused mode leaves the mode as it was


def test_integrating_counters_count_over_the_count_time(tmp_path, run_dir):
    peak = build(tmp_path, run_dir, "- {name: p, class: simulation_counter, distribution: gaussian, axis: $m, "
                 "center: 0, fwhm: 1, height: 1000, unit: cts}\n", "p")
    assert kind_of(peak) == INTEGRATING and integrates(peak) and peak.unit == "cts"
    assert peak.read(1.0) == pytest.approx(1000.0) and peak.read(0.1) == pytest.approx(100.0)
    diode = build(tmp_path, run_dir, "- {name: q, class: simulation_diode, mean: 50, noise: 0, integrating: true}\n",
                  "q")
    assert kind_of(diode) == INTEGRATING and diode.unit == "counts" and diode.read(0.2) == pytest.approx(10.0)
    sampled = build(tmp_path, run_dir, "- {name: s, class: simulation_counter, integrating: false, height: 7}\n", "s")
    assert kind_of(sampled) == SAMPLING and sampled.read(3.0) == 7.0


@pytest.mark.parametrize("text, message", [
    ("- {name: d, class: simulation_diode, mode: avg}\n", "c.yml:1: diode 'd': mode must be one of MEAN, LAST"),
    ("- {name: d, class: simulation_diode, integrating: yes please}\n", "c.yml:1: diode 'd': integrating must be"),
    ("- {name: d, class: simulation_counter, mode: MEAN, integrating: true}\n",
     "c.yml:1: counter 'd': 'mode' is for sampling counters"),
])
def test_bad_kinds_in_the_yaml_are_refused_with_file_and_line(tmp_path, run_dir, text, message):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, run_dir, text, "d")
    assert str(info.value).startswith(message), str(info.value)


def test_the_shipped_counters_have_honest_kinds_and_units(run_dir):
    config = Config(CONFIG_DIR, SettingsStore(run_dir))
    xtal, ring_current = config.get("xtal"), config.get("ring_current")
    assert kind_of(xtal) == INTEGRATING and xtal.unit == "cts"  # counts, not cts/s
    assert kind_of(ring_current) == SAMPLING and ring_current.mode == SamplingMode.MEAN
    assert ring_current.read(0.05) == pytest.approx(ring_current.read(1.0), rel=1e-3)  # ~200 mA either way
    assert ring_current.channels()[0].unit == "mA"
    for name in ("i0", "it", "gauss"):
        assert kind_of(config.get(name)) == INTEGRATING
    for name in ("diode1", "diode2", "diode3"):
        assert kind_of(config.get(name)) == SAMPLING


def test_stats_channels_and_units_reach_the_file_and_redis(scan_session, shared_redis):
    ns = scan_session
    ns["diode1"].mode = "STATS"
    scan = ns["ascan"](ns["m0"], 0, 1, 4, 0.01, ns["diode1"], ns["gauss"])
    data = scan.get_data()
    assert set(data) >= {"diode1", "diode1_std", "diode1_min", "diode1_max", "diode1_N"}
    assert data["diode1_N"].tolist() == [10] * 5  # 10 ms at 1 kHz
    assert np.all(data["diode1_min"] <= data["diode1"]) and np.all(data["diode1"] <= data["diode1_max"])
    with h5py.File(scan.filename, "r", locking=False) as h5:
        measurement = h5[f"{scan.entry}/measurement"]
        assert measurement["diode1"].attrs["units"] == "a.u."  # the test diodes have no unit: the file says so
        assert measurement["gauss"].attrs.get("units") == "counts"
        np.testing.assert_array_equal(measurement["diode1_N"][()], data["diode1_N"])
    reader = ScanReader(connect(shared_redis), scan.key)
    assert reader.channels["gauss"].extra == {"kind": "integrating"}
    assert reader.channels["diode1_max"].extra == {"kind": "sampling", "mode": "STATS"}
    np.testing.assert_array_equal(reader.get_data()["diode1_std"], data["diode1_std"])


def test_count_time_0_warns_about_integrating_counters_only(scan_session, caplog):
    ns = scan_session
    with caplog.at_level(logging.WARNING):
        sampled = ns["ascan"](ns["m0"], 0, 1, 2, 0, ns["diode1"])
    assert "count time 0" not in caplog.text and sampled.get_data()["diode1"] == pytest.approx([100] * 3, rel=0.2)
    with caplog.at_level(logging.WARNING):
        ns["ascan"](ns["m0"], 0, 1, 2, 0, ns["diode1"], ns["gauss"])
    assert ("ascan: count time 0: integrating counters (gauss) will read 0 at every point; give a count time > 0"
            in caplog.text)


def test_a_device_counter_in_an_fscan_samples_each_point_from_its_trigger_to_the_next(scan_session):
    """A counter that samples a device (Tango, EPICS) in a continuous scan: point i's mean is
    over frame i's own interval (here the rotation's read-back: start + (i + 1/2) step), not
    the approach move for the first point nor the previous frame's for the others."""
    from bliss_lite.controllers.counters.device_sampling import DeviceSamplingCounter

    ns = scan_session
    omega = ns["omega"]

    class OmegaReadback(DeviceSamplingCounter):
        def read_value(self):
            return omega.position_at(time.monotonic())  # where the rotation is now

    counter = OmegaReadback("omega_rb", unit="deg", sample_period=0.002)
    ns["pilatus"].roi = (816, 700, 48, 160)  # a frame rendered well within its period,
    ns["pilatus"].render(time.monotonic(), 0.01)  # its model built before the scan: no trigger late
    scan = ns["fscan"](omega, 0.0, 2.0, 8, 0.05, ns["pilatus"], counter, save=False)
    values = np.asarray(scan.get_data()["omega_rb"])
    assert values.shape == (8,)
    starts = 2.0 * np.arange(8)  # where frame i starts (its trigger)
    # sampled from its trigger on: never before it (the previous frame's interval, or the
    # approach for the first point, would be); a loaded machine only makes the end later
    assert np.all(values >= starts - 0.05), values
    assert np.all(values[:-1] < starts[:-1] + 2.0 + 2.0) and np.all(np.diff(values) > 0), values
