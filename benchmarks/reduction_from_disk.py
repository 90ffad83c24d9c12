#!/usr/bin/env python3
"""Benchmark: the offline reconstruction of a saved XRD-CT scan at the seed's slice size, from
disk, with the resident memory sampled throughout (seed-scale issue, b).

The scan is made once, outside the timed part, laid out as a real scan's entry: a tiny real
`xrdct` in the `demo` session (full Pilatus 2M frames, the integration hook, npt = `--nq`)
gives the template: its master entry is copied, its channels (omega, x, z, i0,
it, elapsed_time, pilatus_frame_number) grown to the big scan's frames and filled, its
scan_info replaced by the big scan's (`xrdct(..., run=False)` in the same session: the
`xrdct` parameters and the recorded sample description, its phases narrowed to CeO2 and LaB6),
the detector's Virtual Dataset made again over the big scan's planned data files (which do not
exist: the seed's raw frames are 26 TB; nothing here reads them), and the `integrate`
NXprocess written by `nexus_output.write_integration` over `<sample>_scan0001/integrated.h5`,
made by the scan hook's own `PatternStore` (its datasets, one omega sweep per chunk, gzip level
1) and filled chunk by chunk, each generated and deflated in one of 2 threads and written as
it is (`write_direct_chunk`): `--heights` x `--nomega` x `--nx` x `--nq` float32 (40 x 600 x
400 x 1000: 38.4 GB, more than this machine's memory), never held whole. Pattern content, cheap but not trivial: a
cylinder of amorphous matrix (a broad hump) holding a disk of CeO2 and one of LaB6, whose radii
change smoothly with z; each frame is the projections' chords times Gaussian peaks at the
phases' reflections (pyFAI calibrants, the sample's peak width), times I0 (a slow ripple)
and the matrix's transmission, as I0 and It record them; so the normalised sinograms are
consistent and the phase maps show the disks (`map_correlation`: each phase's map at the
middle height against its disk, Pearson r).

Timed: the registered `reconstruct_scan` job on the entry, in this process (reads the patterns
from the file in blocks, holds at most two heights of sinograms, writes the volume and the maps
to `reconstructed.h5` height by height and the `reconstruct` NXprocess). A thread reads VmRSS
from /proc/self/status every `--sample-s` (`peak_rss_mb`, `rss_trace_mb`); VmHWM, the
kernel's own peak, also between samples, is reported beside it and decides `goal_met`
(<= 4 GB). `seconds_per_slice` is the job's wall time / heights; `parts_seconds` splits it
(`_timers`). Making the scan and the template runs in child processes, so this process holds
only what the reconstruction takes.
`--out DIR`: where the scan's folder is made (needs the patterns' and the volume's bytes free:
64 GB at the default size); it is removed at the end (`--keep` keeps it). Prints one JSON line.
Usage: python benchmarks/reduction_from_disk.py [--heights 40] [--nomega 600] [--nx 400] [--nq 1000]
       [--out /tmp] [--sample-s 0.5] [--keep]      (smoke test: --heights 2 --nq 100)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
X_HALF = 1.0  # mm: x from -1 to 1 (400 positions: 5 um steps)
Z_STEP = 0.005  # mm between heights
PERIOD = 0.004  # s a frame (250 Hz), for the planned scan's parameters only
PHASES = {"CeO2": "CeO2", "LaB6": "LaB6"}
# the phantom (mm, in the sample's frame; rotation axis at x = 0): a matrix cylinder and two disks
MATRIX_RADIUS, MU = 0.8, 0.4  # the matrix's radius and attenuation (1/mm)
DISKS = {"CeO2": (-0.3, 0.25, 0.3), "LaB6": (0.35, -0.2, 0.25)}  # (u, v, radius at the middle height)
I0 = 4000.0  # counts a frame
PEAK_HEIGHT, HUMP_HEIGHT = 50.0, 5.0  # counts per mm of chord
MASTER, ENTRY = "sample.h5", "1.1"


def status_mb(key, pid="self"):
    """A memory figure of /proc/<pid>/status in MB (VmRSS, VmHWM), None if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return None


def heights_of(n):
    return [round((k - n // 2) * Z_STEP, 6) for k in range(n)]


def grid(args):
    """(x_mid, omega_mid, z): the scan's grid as xrdct lays it out."""
    import numpy as np

    dx = 2 * X_HALF / args.nx
    x = -X_HALF + (np.arange(args.nx) + 0.5) * dx
    omega = (np.arange(args.nomega) + 0.5) * 180.0 / args.nomega
    return x, omega, np.asarray(heights_of(args.heights))


def radius(r0, z, z_span):
    """A disk's radius at height z: smooth in z (a cone), r0 at the middle."""
    return r0 * (1.0 + 0.25 * z / max(z_span, 1e-9))


def chord(u, v, r, omega_deg, x):
    """Length (mm) of the beam at motor x, sample turned by omega, through the disk (u, v, r)."""
    import numpy as np

    om = np.radians(omega_deg)
    d = x - (u * np.cos(om) + v * np.sin(om))
    return 2.0 * np.sqrt(np.clip(r * r - d * d, 0.0, None))


# -- the template: a tiny real xrdct (child process, gevent) ------------------------------------

def make_template(args, folder):
    from bench_env import private_environment

    with private_environment("bl_rfd_tpl_"):
        from gevent import monkey

        monkey.patch_all()
        import h5py

        from bliss_lite.shell.runner import open_session

        session, ns = open_session("demo", ROOT / "config")
        session.scan_context.watchers.clear()
        axes = ns["omega"], ns["x"], ns["z"]
        hooks = {"integration": {"npt": args.nq, "workers": 0}}  # its patterns: the NXprocess template
        planned = ns["xrdct"](*axes, -X_HALF, X_HALF, args.nx, heights_of(args.heights), PERIOD,
                              n_omega=args.nomega, hooks=hooks, run=False)
        tiny = ns["xrdct"](*axes, -X_HALF, X_HALF, 4, heights_of(args.heights)[:2], 0.2, n_omega=6, hooks=hooks)
        shutil.copy(tiny.filename, folder / "template.h5")
        with h5py.File(tiny.filename, "r", locking=False) as h5:
            stored = json.loads(h5[f"{tiny.entry}/scan_info"][()])
        info = {**stored, **planned.scan_info, "title": planned.title, "npoints": planned.npoints,
                "filename": str(folder / MASTER), "entry": ENTRY, "start_time": time.time()}
        info["sample"] = {**info["sample"], "phases": dict(PHASES)}
        (folder / "template.json").write_text(json.dumps({"scan_info": info, "entry": tiny.entry}, default=str))
        session.close()


# -- the big scan (child process) -----------------------------------------------------------------

def write_scan(args, folder):
    """The master entry (from the template) and the patterns file; prints {seconds, bytes}."""
    import h5py
    import numpy as np

    from bliss_lite.data.frame_files import make_virtual_frames, planned_counts
    from bliss_lite.processing.integration_hook import pattern_store
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.nexus_output import write_integration

    started = time.perf_counter()
    template = json.loads((folder / "template.json").read_text())
    info = template["scan_info"]
    scan = Phantom(args, float(info["sample"]["peak_fwhm"]))
    frames = scan.frames
    master = folder / MASTER
    with h5py.File(folder / "template.h5", "r") as src, h5py.File(master, "w", libver="latest") as dst:
        entry_src = src[template["entry"]]
        configuration = json.loads(entry_src["integrate/configuration"][()])
        radial = entry_src["integrate/results/q"][()]
        dst.copy(entry_src, ENTRY)
        dst.attrs["default"] = ENTRY
        entry = dst[ENTRY]
        for name in ("integrate", "reconstruct", "scan_info", "title"):
            if name in entry:
                del entry[name]
        entry["title"] = info["title"]
        entry["scan_info"] = json.dumps(info, default=str)
        entry["scan_info"].attrs["type"] = "application/json"
        detector = entry["instrument/pilatus"]
        data = detector["data"]
        spec = argparse.Namespace(name="pilatus", shape=data.shape[1:], dtype=data.dtype, unit=data.attrs.get("units"))
        del detector["data"]
        make_virtual_frames(detector, spec, master, int(ENTRY.split(".")[0]),
                            planned_counts(frames, int(detector["frames_per_file"][()])))
        channels = {name: entry[f"measurement/{name}"] for name in ("omega", "x", "z", "i0", "it", "elapsed_time",
                                                                  "pilatus_frame_number")}
        for dataset in channels.values():
            dataset.resize(frames, axis=0)
        rng = np.random.default_rng(0)
        step = 2**20
        for first in range(0, frames, step):
            f = np.arange(first, min(first + step, frames))
            omega, x, z, i0, trans = scan.readbacks(f)
            values = {"omega": omega + rng.normal(0, 0.01 * 180 / args.nomega, f.size),  # read-back jitter
                      "x": x + rng.normal(0, 1e-5, f.size), "z": z + rng.normal(0, 1e-5, f.size),
                      "i0": i0, "it": i0 * trans, "elapsed_time": f * PERIOD, "pilatus_frame_number": f}
            for name, dataset in channels.items():
                dataset[first:f[-1] + 1] = values[name]
    channels_s = time.perf_counter() - started

    # the patterns file as the scan hook makes it (PatternStore: its datasets, chunks, filter,
    # attributes), then filled chunk by chunk: each generated and deflated (zlib, as HDF5's gzip
    # filter stores it) in a pool of threads, written as it is (write_direct_chunk)
    scan.profiles(radial)
    store = pattern_store(master, int(ENTRY.split(".")[0]), args.nq, info, frames)
    stored = store.close(frames)
    with h5py.File(stored["intensity"].path, "r+", libver="latest", locking=False) as h5:
        intensity, mask = h5["intensity"], h5["integrated"]
        rows = intensity.chunks[0]
        for first, chunk in _in_threads(lambda first: scan.chunk(first, rows), range(0, frames, rows), 2):
            intensity.id.write_direct_chunk((first, 0), chunk)
        for first in range(0, frames, 2**22):
            mask[first:min(first + 2**22, frames)] = True
    settings = IntegrationSettings.from_dict(configuration)
    write_integration(master, ENTRY, radial, settings, stored["intensity"], stored["integrated"])
    print(json.dumps({"write_seconds": time.perf_counter() - started, "channels_seconds": channels_s,
                      "patterns_file_bytes": stored["intensity"].path.stat().st_size,
                      "q_range": [float(radial.min()), float(radial.max())]}))


def _in_threads(work, items, threads, ahead=8):
    """Yield (item, work(item)) in order, `threads` threads working at most `ahead` items ahead."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        pending = deque()
        for item in items:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= ahead:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


class Phantom:
    """The scan's frames: read-backs, monitors and patterns of any frame range, computed."""

    def __init__(self, args, peak_fwhm):
        from bliss_lite.processing.phase_maps import FWHM_TO_SIGMA

        self.n_x, self.n_omega, self.nq = args.nx, args.nomega, args.nq
        self.x_mid, self.omega_mid, self.z = grid(args)
        self.frames = self.z.size * self.n_x * self.n_omega
        self.z_span = max(abs(self.z).max(), Z_STEP)
        self.sigma = peak_fwhm * FWHM_TO_SIGMA
        self.stack = None

    def readbacks(self, f):
        """(omega, x, z, I0, transmission it/I0) of frames f, as xrdct orders them: z slowest,
        then x, omega sweeping, every other sweep backwards (snake). I0 has a slow ripple; the
        matrix cylinder absorbs (the same at every height)."""
        import numpy as np

        line, j = np.divmod(f, self.n_omega)
        iz, ix = np.divmod(line, self.n_x)
        io = np.where(line % 2 == 1, self.n_omega - 1 - j, j)
        omega, x = self.omega_mid[io], self.x_mid[ix]
        i0 = I0 * (1.0 + 0.03 * np.sin(2 * np.pi * f / 7919.0))
        return omega, x, self.z[iz], i0, np.exp(-MU * chord(0.0, 0.0, MATRIX_RADIUS, omega, x))

    def profiles(self, radial):
        """Per mm of chord (nq,): the phases' reflections (Gaussians of the sample's peak width,
        pyFAI's reflections, strength (d / d_max)^2), and the matrix's amorphous hump."""
        import numpy as np

        from bliss_lite.processing.phase_maps import peak_positions

        rows = []
        for calibrant in PHASES.values():
            q, strength = peak_positions(calibrant, radial.min(), radial.max())
            shape = (strength[:, None] * np.exp(-0.5 * ((radial[None, :] - q[:, None]) / self.sigma) ** 2)).sum(axis=0)
            rows.append(PEAK_HEIGHT * shape / shape.max())
        rows.append(HUMP_HEIGHT * np.exp(-0.5 * ((radial - 20.0) / 4.0) ** 2))
        self.stack = np.stack(rows).astype(np.float32)

    def patterns(self, f):
        """(len(f), nq) float32: chords through the disks and the matrix times their profiles,
        times I0 / its nominal value and the transmission."""
        import numpy as np

        omega, x, z, i0, trans = self.readbacks(f)
        chords = [chord(u, v, radius(r, z, self.z_span), omega, x) for u, v, r in DISKS.values()]
        chords.append(chord(0.0, 0.0, MATRIX_RADIUS, omega, x))
        weights = (np.stack(chords, axis=1) * (i0 / I0 * trans)[:, None]).astype(np.float32)
        return np.einsum("fk,kq->fq", weights, self.stack)

    def chunk(self, first, rows):
        """The deflated bytes of the chunk of frames first..first+rows (zero padded at the end)."""
        import zlib

        import numpy as np

        data = np.zeros((rows, self.nq), np.float32)
        f = np.arange(first, min(first + rows, self.frames))
        data[:f.size] = self.patterns(f)
        return zlib.compress(data.tobytes(), 1)


# -- the timed part: reconstruct_scan, memory sampled ------------------------------------------

def reconstruct(args, folder):
    import numpy as np

    from bliss_lite.processing.phase_maps import correlation
    from bliss_lite.processing.scan_plugins import reconstruct_scan
    from bliss_lite.processing.tomo_grid import image_axis

    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), status_mb("VmRSS")))
            stop.wait(args.sample_s)

    rss_before = status_mb("VmRSS")
    sampler = threading.Thread(target=sample, daemon=True)
    parts, restore = _timers()
    start = time.perf_counter()
    sampler.start()
    try:
        done = reconstruct_scan({"filename": str(folder / MASTER), "entry": ENTRY})
    finally:
        stop.set()
        sampler.join()
        restore()
    seconds = time.perf_counter() - start
    parts["other"] = seconds - sum(parts.values())
    samples.append((time.perf_counter(), status_mb("VmRSS")))
    peak_t, peak = max(samples, key=lambda s: s[1])
    hwm = status_mb("VmHWM")

    import h5py

    x_mid, _, zs = grid(args)
    middle = args.heights // 2
    with h5py.File(folder / MASTER, "r") as h5:
        process = h5[f"{ENTRY}/reconstruct"]
        maps = {p: process[f"{p}/map"][middle] for p in PHASES}
        volume_shape = process["volume/data"].shape
    axis = image_axis(x_mid, done["centre_mm"], args.nx)
    u, v = np.meshgrid(axis, axis)  # map[row, col] at (u = axis[col], v = axis[row])
    z_span = max(abs(zs).max(), Z_STEP)
    truth = {p: ((u - cu) ** 2 + (v - cv) ** 2 < radius(r, zs[middle], z_span) ** 2).astype(float)
             for p, (cu, cv, r) in DISKS.items()}
    return {"seconds": round(seconds, 1), "seconds_per_slice": round(seconds / args.heights, 2),
            "parts_seconds": {k: round(v, 1) for k, v in parts.items()},
            "slices": done["slices"], "peak_rss_mb": round(peak, 1), "peak_at_s": round(peak_t - start, 1),
            "vm_hwm_mb": round(hwm, 1), "rss_before_mb": round(rss_before, 1), "rss_samples": len(samples),
            "centre_mm": round(done["centre_mm"], 6), "volume_shape": list(volume_shape),
            "map_correlation": {p: round(correlation(maps[p], truth[p]), 3) for p in PHASES},
            "rss_trace_mb": [[round(t - start, 1), round(mb)] for t, mb in samples[:: max(1, len(samples) // 60)]]}


def _timers():
    """Time spent in the job's parts, by wrapping (for this run only) the functions it calls:
    reading pattern blocks (`scan_blocks`, its generator's steps), reconstructing a height (FBP,
    centre, maps: `_reconstruct_height`), writing a slice (`VolumeStore.write`). The rest
    ("other") is placing and normalising the patterns, the I0 mean, the NXprocess.
    Returns ({part: seconds}, restore)."""
    from bliss_lite.processing import reduction_files
    from bliss_lite.processing.reconstruction_hook import ReconstructionHook

    parts = {"read_patterns": 0.0, "reconstruct_heights": 0.0, "write_slices": 0.0}

    def timed(call, part):
        def wrapper(*args, **kwargs):
            begun = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                parts[part] += time.perf_counter() - begun
        return wrapper

    blocks = reduction_files.scan_blocks

    def scan_blocks(*args, **kwargs):
        steps = blocks(*args, **kwargs)
        while True:
            begun = time.perf_counter()
            try:
                block = next(steps)
            except StopIteration:
                return
            finally:
                parts["read_patterns"] += time.perf_counter() - begun
            yield block

    saved = [(reduction_files, "scan_blocks", blocks),
             (ReconstructionHook, "_reconstruct_height", ReconstructionHook._reconstruct_height),
             (reduction_files.VolumeStore, "write", reduction_files.VolumeStore.write)]
    reduction_files.scan_blocks = scan_blocks
    ReconstructionHook._reconstruct_height = timed(ReconstructionHook._reconstruct_height, "reconstruct_heights")
    reduction_files.VolumeStore.write = timed(reduction_files.VolumeStore.write, "write_slices")

    def restore():
        for owner, name, value in saved:
            setattr(owner, name, value)
    return parts, restore


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heights", type=int, default=40)
    parser.add_argument("--nomega", type=int, default=600)
    parser.add_argument("--nx", type=int, default=400)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--out", default="/tmp", help="folder in which the scan's folder is made (and removed)")
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--keep", action="store_true", help="keep the scan's folder")
    parser.add_argument("--template", dest="template_into", help=argparse.SUPPRESS)  # internal stages
    parser.add_argument("--write", dest="write_into", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.template_into:
        return make_template(args, Path(args.template_into))
    if args.write_into:
        return write_scan(args, Path(args.write_into))

    frames = args.heights * args.nomega * args.nx
    patterns_bytes, volume_bytes = frames * args.nq * 4, args.heights * args.nx**2 * args.nq * 4
    Path(args.out).mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.out).free
    if free < patterns_bytes + volume_bytes + 2e9:
        sys.exit(f"{args.out}: {free / 1e9:.1f} GB free, the scan needs {(patterns_bytes + volume_bytes) / 1e9:.1f} GB "
                 f"(patterns and volume) and 2 GB to spare: choose another --out or fewer --heights")
    folder = Path(tempfile.mkdtemp(prefix="bl_rfd_", dir=args.out))
    sizes = [f"--{k}={getattr(args, k)}" for k in ("heights", "nomega", "nx", "nq")]
    here = str(Path(__file__).resolve())
    try:
        started = time.perf_counter()
        made = subprocess.run([sys.executable, here, *sizes, f"--template={folder}"], cwd=ROOT, capture_output=True,
                              text=True)
        if made.returncode:  # the session's own messages otherwise stay out of the JSON line's way
            sys.exit(f"the template scan failed:\n{made.stdout}{made.stderr}")
        template_s = time.perf_counter() - started
        made = subprocess.run([sys.executable, here, *sizes, f"--write={folder}"], check=True, cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
        written = json.loads(made.stdout.strip().splitlines()[-1])
        load_before = os.getloadavg()
        figures = reconstruct(args, folder)
        load_after = os.getloadavg()
        on_disk = {p.name: p.stat().st_size for p in (folder / "sample_scan0001").glob("*.h5")}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result = {
        "benchmark": "reduction_from_disk", "date": time.strftime("%Y-%m-%d"),
        "shape": {"heights": args.heights, "n_omega": args.nomega, "n_x": args.nx, "nq": args.nq},
        "frames": frames, "patterns_bytes": patterns_bytes, "volume_bytes": volume_bytes,
        **figures, "goal_peak_rss_mb": 4096, "goal_met": figures["vm_hwm_mb"] <= 4096,
        "files_on_disk_bytes": on_disk, "make_seconds": round(template_s + written["write_seconds"], 1),
        "q_range": written["q_range"], "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after], "cpus": os.cpu_count(),
        "folder": str(folder) + (" (kept)" if args.keep else " (removed)"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
