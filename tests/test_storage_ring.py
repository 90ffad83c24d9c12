"""The simulated storage ring: current, decay, refills, beam losses, and what follows it."""
import math

import numpy as np
import pytest

from bliss_lite.config import Config
from bliss_lite.config.errors import ConfigError
from bliss_lite.config.settings import SettingsStore
from bliss_lite.controllers.storage_ring import StorageRing
from tests.conftest import CONFIG_DIR, write_config


def test_current_decays_refills_and_drops_to_zero_during_a_loss():
    ring = StorageRing("ring", current=200, lifetime_h=1, refill_every_s=600, refill_s=10,
                       beam_losses=[(100, 20)])
    t0 = ring.t0
    assert ring.current_at(t0) == pytest.approx(200)
    assert ring.current_at(t0 + 60) == pytest.approx(200 * math.exp(-60 / 3600))
    assert ring.current_at(t0 + 100.5) == 0 and ring.current_at(t0 + 119.9) == 0
    assert ring.current_at(t0 + 125) == pytest.approx(100)  # refilled over 10 s after the loss ends at 120
    assert ring.current_at(t0 + 130) == pytest.approx(200)
    assert ring.current_at(t0 + 130 + 599) < 200 * math.exp(-590 / 3600) * 1.001  # decays until the top-up...
    assert ring.current_at(t0 + 130 + 600) == pytest.approx(200)  # ...600 s after the last refill
    assert ring.beam_fraction_at(t0 + 110) == 0 and ring.beam_fraction_at(t0) == 1
    # before the ring began (a frame rendered at monotonic 0 on a host up for days): as filled,
    # never the decay run backwards (exp(+uptime/lifetime) once made a frame 13 % brighter)
    assert ring.current_at(0.0) == 200 and ring.current_at(t0 - 3600) == 200


def test_lose_beam_by_hand_and_random_losses_at_the_mean_rate():
    ring = StorageRing("ring", current=100)
    start = ring.lose_beam(5.0, after_s=1.0)
    assert ring.current_at(start - 0.01) > 99 and ring.current_at(start + 4.9) == 0
    assert ring.current_at(start + 5.01) > 99
    with pytest.raises(ValueError, match="ring: lose_beam needs a duration > 0"):
        ring.lose_beam(-1)
    random = StorageRing("r", mtbf_s=100, loss_duration_s=10, seed=3)
    t = random.t0 + np.linspace(0, 100_000, 200_001)
    off = np.array([random.current_at(v) == 0 for v in t])
    assert 0.05 < off.mean() < 0.15  # ~10 s lost per ~110 s
    starts = np.count_nonzero(off[1:] & ~off[:-1])
    assert 700 < starts < 1100


def test_the_shipped_sessions_have_a_ring_that_the_monitors_follow(config):
    ring, counter = config.get("ring"), config.get("ring_current")
    assert counter.ring is ring and counter.read(10.0) == pytest.approx(ring.current, rel=1e-6)
    sample = config.get("xrdct_sample")
    assert sample.ring is ring
    for name in ("demo", "test"):
        assert {"ring", "ring_current"} <= set(config.get(name).object_names())
    (floor,) = config.get("demo").suspenders_config  # the demo's scans wait for the beam
    assert floor["when"] == "ring_current" and floor["resume_above"] == 150
    t = ring.lose_beam(30)
    i0, it = sample.monitors_at(t + 1, 0.01)
    assert i0 == 0 and it == 0
    frame, _ = sample.frame_at(t + 1, 0.01, config.get("pilatus").roi)
    assert frame.clip(0).sum() == 0  # no beam: no diffraction, the gaps stay marked
    i0, _ = sample.monitors_at(t + 31, 0.01)
    assert i0 > 5000


def test_a_bad_ring_configuration_is_refused_with_file_and_line(tmp_path):
    root = write_config(tmp_path / "cfg", {"ring.yml": (
        "- name: ring\n  class: storage_ring\n  current: 200\n  beam_losses:\n"
        "    - {at_s: 30, duration_s: -2}\n")})
    with pytest.raises(ConfigError, match=r"ring.yml:5: storage ring 'ring': beam loss 1: duration_s must be > 0"):
        Config(root, SettingsStore(tmp_path / "run")).get("ring")
    assert CONFIG_DIR.is_dir()
