"""Standard commands and counters in the `test` session, as a scientist would use them."""
import math
import re

import numpy as np
import pytest

from bliss_lite.controllers.counters.measurement_group import active_mg
from bliss_lite.controllers.errors import LimitError
from bliss_lite.shell.standard import lscnt, lsmg, lsmot, mv, mvr, sta, sync, umv, umvr, wa, wm


def table_rows(text):
    return [line.split() for line in text.splitlines() if line.strip()]


def test_session_namespace(test_session):
    ns = test_session
    assert ns["SETUP_DONE"] is True  # the setup file ran in the namespace
    for name in ("m0", "m1", "m2", "m3", "diode1", "gauss", "test_mg", "omega", "x", "z", "umv", "wa"):
        assert name in ns
    assert "srot" not in ns  # only the session's own objects


def test_mv_umv_and_relative_moves(test_session, capsys):
    m0, m1 = test_session["m0"], test_session["m1"]
    mv(m0, 1.5, m1, -2)
    assert (m0.position, m1.position) == (1.5, -2.0)
    mvr(m0, 0.5)
    assert m0.position == 2.0
    umv(m1, 3)
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows[0] == ["m1"] and rows[2] == ["user", "3.00000"] and rows[3] == ["dial", "3.00000"]
    umvr(m1, -1)
    assert m1.position == 2.0


def test_move_arguments_checked_before_motion(test_session):
    m0, m1 = test_session["m0"], test_session["m1"]
    with pytest.raises(TypeError, match="umv: give axis, position pairs"):
        umv(m0)
    with pytest.raises(TypeError, match="mv: argument 1 must be an axis"):
        mv("m0", 1)
    with pytest.raises(ValueError, match="umv: position for m0 must be a finite number, got nan"):
        umv(m0, math.nan)
    with pytest.raises(LimitError, match="m1: target 101 beyond high limit 100"):
        umv(m0, 5, m1, 101)  # m0 must not have moved either
    assert m0.position == 0.0


def test_wa_shows_user_and_dial(test_session, capsys):
    m0 = test_session["m0"]
    mv(m0, 2)
    m0.position = 7  # offset 5
    wa()
    out = capsys.readouterr().out
    assert out.startswith("Current Positions: user\n                   dial\n")
    rows = table_rows(out)
    header = rows[2]
    assert header[:4] == ["m0", "m1", "m2", "m3"] and "omega[deg]" in header and "x[mm]" in header
    assert rows[4][0] == "7.00000" and rows[5][0] == "2.00000"


def test_wm_values(test_session, capsys):
    m0 = test_session["m0"]
    mv(m0, 1)
    m0.position = 4  # offset 3
    wm(m0)
    text = capsys.readouterr().out
    values = [r[-1] for r in table_rows(text)[2:] if len(r) == 2]
    # user high, current, low, offset, dial high, current, low
    assert values == ["103.00000", "4.00000", "-97.00000", "3.00000", "100.00000", "1.00000", "-100.00000"]
    with pytest.raises(TypeError, match="wm: give one or more axes"):
        wm()


def test_sta_lsmot_lscnt_lsmg(test_session, capsys):
    sta()
    out = capsys.readouterr().out
    assert re.search(r"m0\s+READY \(Axis is READY\)", out)
    lsmot()
    assert capsys.readouterr().out.split("\n")[1].split() == ["m0", "m1", "m2", "m3", "m4", "omega", "x", "z"]
    lscnt()
    names = [r[3] for r in table_rows(capsys.readouterr().out)[2:]]
    assert names == ["diode1", "diode2", "diode3", "gauss", "ring_current"]  # the ring's too, in no group
    lsmg()
    assert capsys.readouterr().out.strip() == "* test_mg: diode1, diode2, diode3, gauss"


def test_sync_records_what_the_hardware_says(test_session, run_dir):
    from conftest import CONFIG_DIR

    from bliss_lite.config import Config
    from bliss_lite.config.settings import SettingsStore
    from bliss_lite.controllers.trajectory import Trajectory

    m0 = test_session["m0"]
    m0.controller._set(m0, Trajectory.at_rest(1234.0))  # the hardware moved behind our back
    assert m0.position == pytest.approx(1.234)  # positions are always read from the controller
    restarted = Config(CONFIG_DIR, SettingsStore(run_dir)).get("m0")
    assert restarted.position == 0.0  # ...but the saved position is stale until a sync
    sync(m0)
    restarted = Config(CONFIG_DIR, SettingsStore(run_dir)).get("m0")
    assert restarted.position == pytest.approx(1.234)


def test_aliases_do_not_duplicate_axes(test_session, capsys):
    test_session["alias"] = test_session["m0"]
    lsmot()
    assert capsys.readouterr().out.split("\n")[1].split() == ["m0", "m1", "m2", "m3", "m4", "omega", "x", "z"]


def test_gaussian_counter_follows_its_motor(test_session):
    m0, gauss = test_session["m0"], test_session["gauss"]
    mv(m0, 5.0)
    assert gauss.read(1.0) == pytest.approx(1000.0)
    mv(m0, 5.5)  # half maximum at centre +/- FWHM/2
    assert gauss.read(1.0) == pytest.approx(500.0)
    assert gauss.read(0.1) == pytest.approx(50.0)  # integrated over the count time


def test_diode_samples_its_mean_with_relative_noise(test_session):
    diode = test_session["diode1"]  # sampling, MEAN: noise 0.05 of the mean on each sample
    single = np.array([diode.read(0.0) for _ in range(2000)])  # count time 0: one sample
    assert single.mean() == pytest.approx(100.0, rel=0.01) and single.std() == pytest.approx(5.0, rel=0.1)
    second = np.array([diode.read(1.0) for _ in range(200)])  # 1000 samples averaged
    assert second.mean() == pytest.approx(100.0, rel=0.001)
    assert second.std() == pytest.approx(5.0 / 1000**0.5, rel=0.25)


def test_measurement_group_enable_disable_and_active(test_session, config):
    mg = test_session["test_mg"]
    assert active_mg() is mg
    mg.disable("diode2", test_session["diode3"])
    assert [c.name for c in mg.counters] == ["diode1", "gauss"]
    assert "diode2" in mg.__info__() and "Disabled" in mg.__info__()
    with pytest.raises(ValueError, match="test_mg: no counter nope"):
        mg.disable("nope")
    mg.enable()
    assert len(mg.counters) == 4


def test_objects_print_a_summary(test_session):
    info = test_session["m0"].__info__()
    assert "AXIS m0:" in info and "position (RW): 0.00000" in info and "MOCKUP AXIS" in info
    assert "gaussian of m0" in test_session["gauss"].__info__()
    assert "MeasurementGroup: test_mg (active)" in test_session["test_mg"].__info__()
    assert "Session 'test'" in test_session["SESSION"].__info__()


def test_linear_and_flat_distributions(config):
    from bliss_lite.controllers.counters.simulation import SimulationCounter

    m1 = config.get("m1")
    linear = SimulationCounter("lin", "linear", axis=m1, slope=2.0, background=1.0)
    flat = SimulationCounter("flat", "flat", height=7.0, background=1.0)
    mv(m1, 3.0)
    assert linear.read(1.0) == pytest.approx(7.0) and linear.read(0.5) == pytest.approx(3.5)
    assert flat.read(2.0) == pytest.approx(16.0)
