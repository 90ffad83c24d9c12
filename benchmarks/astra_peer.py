"""The peer of benchmarks/reconstruction.py: ASTRA's FBP one q bin at a time, as users would
reconstruct an XRD-CT slice otherwise (astra-toolbox from PyPI, `pip install -e '.[bench]'`).

ASTRA is called the usual way, in pixel units: `create_proj_geom('parallel', 1.0, n_x, angles)`
(detector bins one pixel wide, centred on the rotation axis) and `create_vol_geom(n_x, n_x)`;
on the CPU the 'FBP' algorithm with a 'linear' projector, on the GPU 'FBP_CUDA'; both with their
default 'ram-lak' filter. One slice of the algorithm is set up once; each bin is then stored
into ASTRA's sinogram, reconstructed and read back (all three timed, as a user pays them).

Matching ASTRA to ours (exact, not fitted): both reconstruct volume per unit length from line
integrals over angles spread evenly over 180 degrees. ASTRA's ramp is 2|nu| (nu in cycles per
bin) and its back-projection is scaled by (pi / 2) / n_angles, i.e. pi / n_angles times |nu|;
ours is Kak & Slaney's band-limited ramp (|nu| up to rounding, DC included) scaled by
pi / n_omega: the angle count cancels. ASTRA's lengths are pixels, ours mm, so ASTRA's image is
per pixel and ours per mm: ours = ASTRA / dx, dx the x step (= our pixel size for n = n_x).
ASTRA's image rows run from +y down, ours from -v up (same u = x columns): its rows are
flipped. Valid for the benchmark's grid: n = n_x, x centred on the rotation axis (centre 0).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import time

import numpy as np

ASTRA_ALGORITHM = {"cpu": "FBP", "gpu": "FBP_CUDA"}


def preload(paths):
    """Load shared libraries (RTLD_GLOBAL) before `import astra`: on the GPU machine, the CUDA 13
    libcufft.so.12, the carried libcudart.so.12 and the libcufft.so.11 shim
    (/work/shared/tools/cufft11_shim/README.md)."""
    for path in [p for p in (paths or "").split(":") if p]:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def disk_sinogram(x, omega_deg, radius, cu, cv):
    """Chord lengths (mm) through a disk of `radius` centred at (u, v) = (cu, cv): a sinogram
    whose exact reconstruction is 1 inside the disk, 0 outside (our convention: the beam at x
    sees u cos(omega) + v sin(omega) = x)."""
    om = np.radians(omega_deg)[:, None]
    t = x[None, :] - (cu * np.cos(om) + cv * np.sin(om))
    return (2 * np.sqrt(np.clip(radius ** 2 - t ** 2, 0, None))).astype(np.float32)


def phantom_bins(x, omega_deg, count):
    """(n_omega, n_x, count) sinograms of off-centre disks of several sizes."""
    half = float(np.abs(x).max())
    bins = [disk_sinogram(x, omega_deg, half * (0.3 + 0.06 * j), half * 0.25 * np.cos(j), half * 0.25 * np.sin(j))
            for j in range(count)]
    return np.stack(bins, axis=-1)


class Slice:
    """One slice's ASTRA objects, set up once; `__call__(sino_2d)` -> ASTRA's image."""

    def __init__(self, backend, n_x, omega_deg):
        import astra

        self.astra = astra
        angles = np.radians(np.asarray(omega_deg, float))
        proj_geom = astra.create_proj_geom("parallel", 1.0, n_x, angles)
        vol_geom = astra.create_vol_geom(n_x, n_x)
        self.sino_id = astra.data2d.create("-sino", proj_geom, 0)
        self.vol_id = astra.data2d.create("-vol", vol_geom, 0)
        cfg = astra.astra_dict(ASTRA_ALGORITHM[backend])
        cfg["ProjectionDataId"] = self.sino_id
        cfg["ReconstructionDataId"] = self.vol_id
        self.projector_id = None
        if backend == "cpu":
            self.projector_id = astra.create_projector("linear", proj_geom, vol_geom)
            cfg["ProjectorId"] = self.projector_id
        self.alg_id = astra.algorithm.create(cfg)

    def __call__(self, sino_2d):
        self.astra.data2d.store(self.sino_id, sino_2d)
        self.astra.algorithm.run(self.alg_id)
        return self.astra.data2d.get(self.vol_id)


def _worker(backend, omega_deg, bins, barrier, results, preload_paths):
    """One peer process: set up, reconstruct one bin untimed, wait for the others, then time its
    bins one by one."""
    preload(preload_paths)
    work = Slice(backend, bins.shape[1], omega_deg)
    work(np.ascontiguousarray(bins[:, :, 0]))  # warm-up
    barrier.wait()
    start = time.perf_counter()
    images = [work(np.ascontiguousarray(bins[:, :, k])) for k in range(bins.shape[2])]
    results.put((os.getpid(), start, time.perf_counter(), np.stack(images, axis=-1)))


def run(backend, omega_deg, sino_bins, processes=1, preload_paths=""):
    """ASTRA's images (n_x, n_x, k) of sino_bins (n_omega, n_x, k), in ASTRA's own scale and row
    order, and the wall time of the k bins: in this process (processes=1, the GPU), else split
    over that many spawned processes, from the moment all are set up and warm until the last ends
    (time.perf_counter is CLOCK_MONOTONIC, the same clock in every process)."""
    k = sino_bins.shape[2]
    if processes <= 1:
        preload(preload_paths)
        work = Slice(backend, sino_bins.shape[1], omega_deg)
        work(np.ascontiguousarray(sino_bins[:, :, 0]))  # warm-up
        start = time.perf_counter()
        images = [work(np.ascontiguousarray(sino_bins[:, :, j])) for j in range(k)]
        return np.stack(images, axis=-1), time.perf_counter() - start
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    parts = np.array_split(np.arange(k), processes)
    workers = [ctx.Process(target=_worker, args=(backend, omega_deg, np.ascontiguousarray(sino_bins[:, :, part]),
                                                 barrier, results, preload_paths)) for part in parts]
    for worker in workers:
        worker.start()
    outcome = {}
    for _ in workers:
        pid, start, end, images = results.get(timeout=3600)
        outcome[pid] = (start, end, images)
    for worker in workers:
        worker.join()
    by_worker = [outcome[worker.pid] for worker in workers]
    images = np.concatenate([item[2] for item in by_worker], axis=-1)
    return images, max(item[1] for item in by_worker) - min(item[0] for item in by_worker)


def compare(astra_images, ours, dx):
    """ASTRA's images matched to ours (rows flipped, / dx) and their difference from ours: max
    relative to ours' maximum and RMS relative to ours' RMS; `check_ratio` is the least-squares
    factor that would still best map the matched images onto ours (reported, not applied)."""
    matched = astra_images[::-1].astype(np.float64) / dx
    ours = np.asarray(ours, np.float64)
    diff = matched - ours
    return {"max_rel_diff": float(np.abs(diff).max() / np.abs(ours).max()),
            "rms_rel_diff": float(np.sqrt((diff ** 2).mean()) / np.sqrt((ours ** 2).mean())),
            "check_ratio": float((matched * ours).sum() / (matched * matched).sum())}


def peer(backend, x, omega_deg, sino, ours_images, bins, processes, preload_paths="", phantoms=0):
    """The peer figure: ASTRA on the first `bins` q bins of sino (n_omega, n_x, nq), extrapolated
    to all nq bins, and its images against ours (ours_images: the same bins of our image, NumPy).
    The first `phantoms` bins hold disk sinograms, the others random values (compared apart:
    on random data the two ramps' different low frequencies dominate)."""
    preload(preload_paths)
    import astra

    nq = sino.shape[2]
    sino_bins = np.ascontiguousarray(sino[:, :, :bins])
    images, seconds = run(backend, omega_deg, sino_bins, processes, preload_paths)
    dx = float(abs(x[1] - x[0]))
    result = {
        "name": f"ASTRA {astra.__version__} {ASTRA_ALGORITHM[backend]}", "bins": bins, "processes": processes,
        "seconds_for_bins": round(seconds, 4), "seconds_per_1000_bins": round(seconds * 1000 / bins, 3),
        "seconds_all_bins": round(seconds * nq / bins, 3),
        "call": f"create_proj_geom('parallel', 1.0, {sino.shape[1]}, radians(omega)), "
                f"create_vol_geom({sino.shape[1]}, {sino.shape[1]}), "
                + ("'FBP' with a 'linear' projector" if backend == "cpu" else "'FBP_CUDA'")
                + ", default ram-lak filter; per bin data2d.store, algorithm.run, data2d.get (timed); "
                  "set up once and one bin run before timing"
                + (f"; bins split over {processes} spawned processes" if processes > 1 else ""),
        "matching": f"ours = ASTRA image with rows flipped / dx (dx = {dx:g} mm, the pixel size: ASTRA works in "
                    "pixels, we in mm); no angle factor: ASTRA's (pi/2)/n_angles with its 2|nu| ramp equals our "
                    "pi/n_omega with the |nu| ramp; check_ratio is the least-squares factor left (not applied)",
    }
    if backend == "gpu":
        result["cuda"] = bool(astra.use_cuda())
    if phantoms:
        result["disk_bins"] = compare(images[..., :phantoms], ours_images[..., :phantoms], dx)
    if bins > phantoms:
        result["random_bins"] = compare(images[..., phantoms:], ours_images[..., phantoms:bins], dx)
    return result
