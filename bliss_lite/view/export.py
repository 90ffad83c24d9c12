"""Static export of a saved scan: `bliss-lite plot FILE ENTRY -o out.png [--counters a,b] [--dpi N]`.

Draws what Flint shows for the scan, for a report or a logbook: the counters against the scanned
motor (cen and peak marked), a mesh as an image, the last detector frame, the mean integrated
pattern and the reconstructed phase maps. Reading and drawing are separate (`read_scan` gives
plain arrays, `draw` a matplotlib Figure without pyplot) so the file is open only while it is read,
read-only with SWMR: a scan still running can be exported. Errors are one line, no traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - the Bitshuffle-LZ4 filter of the frames
import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from bliss_lite.controllers.detectors.pilatus_geometry import GAP_VALUE
from bliss_lite.data.frame_reader import EntryFrames
from bliss_lite.data.model import TIMERS
from bliss_lite.processing.frame_sources import entry_name, open_scan_file
from bliss_lite.scans.peaks import fwhm_and_center, peak_index
from bliss_lite.view.images import mesh_image

PANEL_SIZE = (6.4, 4.8)  # inches, matplotlib's default figure


class PlotError(Exception):
    """A problem with the input (file, entry, counter, output), told in one line; exit status 1."""


@dataclass
class Series:
    name: str
    values: np.ndarray
    unit: str = ""

    @property
    def label(self):
        return f"{self.name} ({self.unit})" if self.unit else self.name


@dataclass
class Mesh:
    """A mesh scan: points in the order measured, `shape` [slow, fast]."""
    shape: tuple
    backnforth: bool
    fast: Series
    slow: Series


@dataclass
class ScanPlot:
    """Everything drawn for one entry, read from the file."""
    path: Path
    entry: str
    title: str
    end_reason: str
    x: Series | None  # None: against the point index
    curves: list
    motors: list
    mesh: Mesh | None = None
    frame: Series | None = None  # the last frame; name "detector: frame i of n"
    pattern: tuple | None = None  # (radial Series, mean intensity Series)
    maps: list = field(default_factory=list)  # (phase Series of a 2-D map, x Series, y Series)


# -- reading --------------------------------------------------------------------------------
def _entry_name(text):
    """"3" or "3.1" -> "3.1" (the writer's names); a name that is not a number is looked up as it is."""
    try:
        return entry_name(str(text).strip())
    except ValueError:
        return str(text)


def _open(path):
    """Read-only, SWMR where the file allows it (a running scan's file), locking off."""
    path = Path(path)
    if not path.is_file():
        raise PlotError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        return open_scan_file(path)
    except OSError as exc:
        raise PlotError(f"{exc} (not a readable HDF5 file)") from None


def _text(value):
    value = value[()] if isinstance(value, h5py.Dataset) else value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _entries(h5):
    def key(name):
        head = name.split(".")[0]
        return (0, int(head), name) if head.isdigit() else (1, 0, name)

    return sorted((name for name in h5 if h5.get(name, getclass=True) is h5py.Group), key=key)


def _unit(entry, name, dataset):
    unit = dataset.attrs.get("units")
    if unit is None:
        snapshot = entry.get(f"instrument/positioners/{name}")
        unit = snapshot.attrs.get("units") if snapshot is not None else None
    return _text(unit) if unit is not None else ""


def _scalars(measurement):
    """{name: dataset} of the one-value-per-point channels (dangling links skipped)."""
    found = {}
    for name in measurement:
        dataset = measurement.get(name)
        if isinstance(dataset, h5py.Dataset) and dataset.ndim == 1:
            found[name] = dataset
    return found


def _default_plot(entry):
    """(signal, axis) names of the entry's default NXdata, None where it has none."""
    group = entry.get(_text(entry.attrs["default"])) if "default" in entry.attrs else None
    if not isinstance(group, h5py.Group):
        return None, None
    signal = group.attrs.get("signal")
    axes = list(np.atleast_1d(group.attrs.get("axes", [])))
    return (_text(signal) if signal is not None else None), (_text(axes[0]) if axes else None)


def read_scan(path, entry, counters=None) -> ScanPlot:
    """The entry's data to draw. `counters`: names to plot (default: the NXdata plot's signal,
    else every scalar counter). Raises PlotError naming the file, entry or counter."""
    path, entry = Path(path), _entry_name(entry)
    with _open(path) as h5:
        if not isinstance(h5.get(entry), h5py.Group):
            present = ", ".join(_entries(h5)) or "none"
            raise PlotError(f"{path}: no entry {entry} (entries: {present})")
        try:
            return _read_entry(path, h5[entry], entry, counters)
        except (OSError, KeyError) as exc:
            raise PlotError(f"{path}: entry {entry}: cannot read it ({exc})") from None


def _read_entry(path, group, entry, counters):
    info = json.loads(_text(group["scan_info"])) if "scan_info" in group else {}
    measurement = group.get("measurement")
    scalars = _scalars(measurement) if isinstance(measurement, h5py.Group) else {}
    signal, axis = _default_plot(group)
    motors = [m for m in info.get("motors", []) if m in scalars] or ([axis] if axis in scalars and axis not in TIMERS else [])
    if counters:
        unknown = [name for name in counters if name not in scalars]
        if unknown:
            raise PlotError(f"{path}: entry {entry}: no counter {unknown[0]!r} "
                            f"(counters: {', '.join(sorted(scalars)) or 'none'})")
        chosen = list(counters)
    elif signal in scalars:
        chosen = [signal]
    else:
        chosen = [n for n in scalars if n not in motors and n not in TIMERS]
    x_name = axis if axis in scalars else (motors[0] if motors else None)
    names = chosen + ([x_name] if x_name else []) + motors
    n = min((scalars[name].shape[0] for name in names), default=0)  # a running scan: the points all have

    def series(name):
        return Series(name, np.asarray(scalars[name][:n], dtype=float), _unit(group, name, scalars[name]))

    title = _text(group["title"]) if "title" in group else ""
    end_reason = _text(group["end_reason"]) if "end_reason" in group else ""
    plot = ScanPlot(path, entry, title, end_reason, series(x_name) if x_name else None,
                    [series(name) for name in chosen], motors)
    if "shape" in info and len(motors) >= 2:
        plot.mesh = Mesh(tuple(info["shape"]), bool(info.get("backnforth")), series(motors[0]), series(motors[1]))
    plot.frame = _last_frame(group)
    plot.pattern = _pattern(group)
    plot.maps = _maps(group)
    return plot


def _groups(group, nx_class):
    for name in group:
        child = group.get(name)
        if isinstance(child, h5py.Group) and _text(child.attrs.get("NX_class", "")) == nx_class:
            yield name, child


def _last_frame(entry):
    """The last frame of the entry's first image detector, as a Series named for the panel.
    Read where it is (`data.frame_reader`): of a scan still running, the newest frame written
    to its data files (the entry's VDS maps the frames planned)."""
    instrument = entry.get("instrument")
    for name, detector in _groups(instrument, "NXdetector") if instrument is not None else ():
        data = detector.get("data")
        if not (isinstance(data, h5py.Dataset) and data.ndim == 3 or data is None and "frames_per_file" in detector):
            continue
        with EntryFrames(entry.file, entry.name.strip("/"), name) as frames:
            count = len(frames)
            if count:
                unit = _text(data.attrs.get("units", "")) if data is not None else ""
                return Series(f"{name}: frame {count - 1} of {count}", frames.frame(count - 1), unit)
    return None


def _pattern(entry):
    """(radial axis, mean of the integrated patterns) of an NXprocess's `results`, else None."""
    for _, process in _groups(entry, "NXprocess"):
        results = process.get("results")
        if not isinstance(results, h5py.Group) or "intensity" not in results:
            continue
        axes = list(np.atleast_1d(results.attrs.get("axes", [])))
        radial_name = _text(axes[-1]) if axes else None
        if radial_name not in results:
            continue
        radial = results[radial_name]
        total, count = _pattern_sum(results)
        if not count:
            continue
        mean = Series(f"mean of {count} patterns", (total / count).astype(np.float32))
        return Series(radial_name, radial[()], _text(radial.attrs.get("units", ""))), mean
    return None


def _pattern_sum(results, block_bytes=16 * 2**20):
    """(sum, count) of the integrated patterns of `results` (those its `integrated` flags),
    read a block of frames at a time: a scan's patterns may be far larger than memory."""
    intensity = results["intensity"]
    flags = results["integrated"] if "integrated" in results else None
    rows = max(1, block_bytes // (4 * max(1, intensity.shape[-1])))
    total, count = np.zeros(intensity.shape[-1]), 0
    for first in range(0, len(intensity), rows):
        block = intensity[first:first + rows]
        if flags is not None:
            block = block[flags[first:first + len(block)]]
        total += block.sum(axis=0, dtype=np.float64)
        count += len(block)
    return total, count


def _maps(entry):
    """[(map Series (first z slice), x Series, y Series)] of every phase map of an NXprocess."""
    maps = []
    for _, process in _groups(entry, "NXprocess"):
        for phase, data in _groups(process, "NXdata"):
            if _text(data.attrs.get("signal", "")) != "map" or "map" not in data:
                continue
            stack = data["map"]  # read the first slice only: a scan may have hundreds of heights
            axes = {key: Series(key, data[key][()], _unit(entry, key, data[key])) for key in ("x", "y", "z") if key in data}
            z = f", z = {axes['z'].values[0]:g} {axes['z'].unit}".rstrip() if "z" in axes else ""
            image = stack[0] if stack.ndim == 3 else stack[()]
            ny, nx = image.shape
            x = axes.get("x", Series("x", np.arange(nx, dtype=float)))
            y = axes.get("y", Series("y", np.arange(ny, dtype=float)))
            maps.append((Series(f"{phase} (reconstructed{z})", image), x, y))
    return maps


# -- drawing --------------------------------------------------------------------------------
def _edges(values, n):
    """(first, last) pixel edges of n evenly spaced positions, from those measured so far."""
    known = values[np.isfinite(values)]
    if len(known) == 0:
        return -0.5, n - 0.5
    step = (known[1] - known[0]) if len(known) > 1 else 1.0
    step = step or 1.0
    last = known[-1] if len(known) == n else known[0] + step * (n - 1)
    return known[0] - step / 2, last + step / 2


def _title(plot):
    number = plot.entry.split(".")[0]
    state = "" if plot.end_reason == "SUCCESS" else f"  [{plot.end_reason or 'running'}]"
    return f"Scan {number}: {plot.title}{state}\n{plot.path.name}  entry {plot.entry}"


def _draw_curves(ax, plot):
    x = plot.x.values if plot.x is not None else np.arange(len(plot.curves[0].values) if plot.curves else 0)
    steps = np.diff(x)
    joined = bool(np.all(steps > 0) or np.all(steps < 0))  # lines over repeated x (xrdct) hide the points
    for curve in plot.curves:
        ax.plot(x, curve.values, marker=".", linewidth=1 if joined else 0, label=curve.name,
                gid=f"curve:{curve.name}")
    ax.set_xlabel(plot.x.label if plot.x is not None else "point index")
    units = {curve.unit for curve in plot.curves}
    ax.set_ylabel(plot.curves[0].label if len(plot.curves) == 1 else units.pop() if len(units) == 1 else "")
    if len(plot.curves) > 1:
        ax.legend(fontsize="small")
    if plot.x is not None and plot.x.name in plot.motors and plot.curves and len(x):
        _mark_peak(ax, x, plot.curves[0].values)
    ax.grid(alpha=0.3)


def _mark_peak(ax, x, y):
    """Vertical lines at the peak and at the FWHM centre (cen) of the first counter."""
    if not np.isfinite(y).any():
        return
    at = float(x[peak_index(y)])
    ax.axvline(at, color="tab:red", linestyle="--", linewidth=1, gid="peak", label=f"peak {at:g}")
    try:
        width, centre = fwhm_and_center(x, y)
    except ValueError:  # a flat counter has no half maximum
        return
    ax.axvline(centre, color="tab:green", linestyle=":", linewidth=1.5, gid="cen",
               label=f"cen {centre:.4g} (FWHM {width:.3g})")
    ax.legend(fontsize="small")


def _draw_mesh(ax, plot, curve):
    mesh = plot.mesh
    fast = mesh_image(mesh.fast.values, mesh.shape, mesh.backnforth)
    slow = mesh_image(mesh.slow.values, mesh.shape, mesh.backnforth)
    x0, x1 = _edges(fast[0] if np.isfinite(fast[0]).all() else fast.ravel(), mesh.shape[1])
    y0, y1 = _edges(slow[:, 0], mesh.shape[0])
    image = ax.imshow(mesh_image(curve.values, mesh.shape, mesh.backnforth), origin="lower",
                      extent=(x0, x1, y0, y1), aspect="auto", interpolation="nearest", gid=f"mesh:{curve.name}")
    ax.figure.colorbar(image, ax=ax, label=curve.label)
    ax.set_xlabel(mesh.fast.label)
    ax.set_ylabel(mesh.slow.label)
    ax.set_title(curve.name)


def _draw_frame(ax, frame):
    """Log scale (zero counts at the bottom of the scale), gap pixels grey."""
    image = np.ma.masked_equal(np.asarray(frame.values), GAP_VALUE)
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    top = max(2.0, float(image.max()) if image.count() else 2.0)
    shown = ax.imshow(image, cmap=cmap, norm=LogNorm(vmin=1, vmax=top, clip=True), interpolation="nearest",
                      gid="frame")
    ax.figure.colorbar(shown, ax=ax, label=f"{frame.unit or 'counts'} (log)")
    ax.set_title(frame.name)
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def _draw_pattern(ax, pattern):
    radial, mean = pattern
    ax.plot(radial.values, mean.values, linewidth=1, gid="pattern")
    ax.set_xlabel(radial.label)
    ax.set_ylabel("intensity")
    ax.set_title(f"integrated: {mean.name}")
    ax.grid(alpha=0.3)


def _draw_map(ax, phase, x, y):
    ny, nx = phase.values.shape
    x0, x1 = _edges(x.values, nx)
    y0, y1 = _edges(y.values, ny)
    shown = ax.imshow(phase.values, origin="lower", extent=(x0, x1, y0, y1), interpolation="nearest",
                      gid=f"map:{phase.name.rsplit(' (reconstructed', 1)[0]}")  # the whole name: it may hold spaces
    ax.figure.colorbar(shown, ax=ax)
    ax.set_title(phase.name)
    ax.set_xlabel(x.label)
    ax.set_ylabel(y.label)


def draw(plot: ScanPlot) -> Figure:
    """One panel per view: curves (or one mesh image per counter), last frame, pattern, maps.
    Every text is literal: names come from the file, and "$x" or "a_b$" must not be read as
    mathtext (a ParseException naming no counter, or a label other than the name)."""
    with rc_context({"text.parse_math": False}):
        return _draw(plot)


def _draw(plot):
    if plot.mesh is not None:
        panels = [lambda ax, c=curve: _draw_mesh(ax, plot, c) for curve in plot.curves]
    else:
        panels = [lambda ax: _draw_curves(ax, plot)]
    if plot.frame is not None:
        panels.append(lambda ax: _draw_frame(ax, plot.frame))
    if plot.pattern is not None:
        panels.append(lambda ax: _draw_pattern(ax, plot.pattern))
    panels += [lambda ax, m=m: _draw_map(ax, *m) for m in plot.maps]
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained")
    figure.suptitle(_title(plot), fontsize="medium")
    for k, panel in enumerate(panels):
        panel(figure.add_subplot(rows, columns, k + 1))
    return figure


def render(path, entry, counters=None) -> Figure:
    """The figure `bliss-lite plot` saves, for a program or a test to look at."""
    return draw(read_scan(path, entry, counters))


def save(figure, out, dpi=100):
    """Write through a temporary file in the same directory, renamed at the end: a reader never
    sees a half-written image. The format follows the suffix (png without one)."""
    out = Path(out)
    kind = out.suffix[1:].lower() or "png"
    fd, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as stream:
            figure.savefig(stream, format=kind, dpi=dpi)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- command line ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{self.prog}: {message} (usage: {self.usage})", file=sys.stderr)
        raise SystemExit(2)


def _dpi(text):
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _parser():
    parser = _Parser(prog="bliss-lite plot", usage="bliss-lite plot FILE ENTRY -o OUT [--counters A,B] [--dpi N]",
                     description="Save a plot of a scan already saved (PNG, PDF, SVG).")
    parser.add_argument("file", metavar="FILE", help="the HDF5 data file")
    parser.add_argument("entry", metavar="ENTRY", help='the scan entry, "3.1" or "3"')
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="image to write (format from the suffix)")
    parser.add_argument("--counters", help="comma-separated counters to plot (default: the scan's plot)")
    parser.add_argument("--dpi", type=_dpi, default=100.0, help="dots per inch (default 100)")
    return parser


def main(argv=None) -> int:
    """`bliss-lite plot FILE ENTRY -o OUT`: 0, 1 (bad file/entry/counter/output) or 2 (usage)."""
    try:
        return _main(_parser(), argv)
    except SystemExit as exc:  # usage errors and --help, as a status
        return int(exc.code or 0)


def _main(parser, argv):
    args = parser.parse_args(argv)
    counters = None
    if args.counters is not None:
        counters = [name.strip() for name in args.counters.split(",") if name.strip()]
        if not counters:
            parser.error("--counters: give at least one counter name")
    kind = Path(args.output).suffix[1:].lower() or "png"
    if kind not in Figure().canvas.get_supported_filetypes():
        parser.error(f"-o {args.output}: cannot write a .{kind} image (use .png, .pdf or .svg)")
    try:
        figure = render(args.file, args.entry, counters)
        try:
            save(figure, args.output, args.dpi)
        except OSError as exc:
            raise PlotError(f"{args.output}: cannot write the image ({exc.strerror or exc})") from None
    except PlotError as exc:
        print(f"bliss-lite plot: {exc}", file=sys.stderr)
        return 1
    return 0
