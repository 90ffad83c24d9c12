#!/usr/bin/env python3
"""Sweep of the GPU back-projection's launch plan: angles per launch x band of the block order.

For each slice size (n_x x n_omega x nq, image n_x x n_x), a random filtered sinogram is made
on the GPU and back-projected by every variant; each is timed by CUDA events (median of
`--repeat` after a warm-up) and compared with the reference (`--reference FILE`: another copy of
`gpu/backproject.py`, e.g. the committed one, else the first variant), relative to its maximum.
Then the best plan of the first size is tried with other kernel configurations.
Prints one JSON line per variant and a table at the end.
Usage: python benchmarks/backproject_sweep.py [--sizes 1000x1570x1000,400x600x1000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import json

import numpy as np


def load_reference(path):
    spec = importlib.util.spec_from_file_location("reference_backproject", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_call(call, repeat):
    import cupy

    call()
    times = []
    for _ in range(repeat):
        marks = (cupy.cuda.Event(), cupy.cuda.Event())
        marks[0].record()
        call()
        marks[1].record()
        marks[1].synchronize()
        times.append(cupy.cuda.get_elapsed_time(*marks) / 1e3)
    return float(np.median(times)), times


class Slice:
    """One size's data on the GPU, its reference image, and the variants' rows."""

    def __init__(self, size, bp, reference, repeat, rows):
        import cupy

        from bliss_lite.processing.gpu.fbp import SliceGeometry

        self.size, self.bp, self.repeat, self.rows = size, bp, repeat, rows
        n_x, n_om, nq = (int(v) for v in size.split("x"))
        x = np.linspace(-1, 1, n_x, endpoint=False) + 1.0 / n_x
        omega = (np.arange(n_om) + 0.5) * 180.0 / n_om
        self.g = g = SliceGeometry(x, omega, 0.0, None, nq, "ramp", "auto")
        self.filtered = cupy.random.default_rng(1).random((g.n_om, g.nxp, g.nqp), dtype=np.float32) - 0.5
        self.image = cupy.empty((g.n, g.n, g.nqp), np.float32)
        self.interpolations = g.n ** 2 * g.n_om * g.nq
        if reference is not None:
            seconds, _ = time_call(lambda: reference.launch(self.filtered, self.image, g.lines, g.n_om, g.n_x, g.nxp,
                                                            g.n, g.weight, 0, g.n), repeat)
            rows.append((size, "reference (committed kernel)", seconds, 0.0))
            print(json.dumps({"size": size, "variant": "reference", "seconds": seconds}), flush=True)
        else:
            bp.launch(self.filtered, self.image, g.lines, g.n_om, g.n_x, g.nxp, g.n, g.weight, 0, g.n,
                      angles=1 << 30, band=0)
        self.expected = self.image.copy()
        self.scale = float(cupy.abs(self.expected).max())

    def variant(self, name, config, angles, band, module=None):
        import cupy

        g = self.g
        module = self.bp if module is None else module
        self.image.fill(np.nan)
        seconds, times = time_call(lambda: module.launch(self.filtered, self.image, g.lines, g.n_om, g.n_x, g.nxp,
                                                          g.n, g.weight, 0, g.n, config=config, angles=angles,
                                                          band=band), self.repeat)
        error = float(cupy.abs(self.image - self.expected).max()) / self.scale
        kernel = module._kernel(*config)
        print(json.dumps({"size": self.size, "variant": name, "seconds": round(seconds, 5),
                          "runs": [round(t, 5) for t in times], "max_rel_err": error,
                          "interpolations_per_second": round(self.interpolations / seconds, -9),
                          "regs": kernel.num_regs, "local_bytes": kernel.local_size_bytes}), flush=True)
        self.rows.append((self.size, name, seconds, error))
        return seconds


def compare_modules(args, bp, reference, rows):
    """Each module's kernel with each of its size's plans."""
    import cupy

    modules = [(path, load_reference(path)) for path in args.modules.split(",")]
    plans = dict(item.split("=") for item in args.plans.split(";"))
    for size in args.sizes.split(","):
        s = Slice(size, bp, reference, args.repeat, rows)
        for path, module in modules:
            for plan in plans[size].split(","):
                name = f"{path.rsplit('/', 1)[-1]} {plan}"
                if plan == "plan":  # the module's own choice
                    s.variant(name, module.CONFIG, None, None, module)
                    continue
                angles, band = (int(v) for v in plan.split(":"))
                s.variant(name, module.CONFIG, angles or 1 << 30, band, module)
        s = None
        cupy.get_default_memory_pool().free_all_blocks()
    print_rows(rows)


def print_rows(rows):
    print(f"{'size':>16} {'variant':>48} {'ms':>8} {'rel err':>9}")
    for size, name, seconds, error in rows:
        print(f"{size:>16} {name:>48} {seconds * 1e3:8.2f} {error:9.1e}")


def main():
    import cupy

    from bliss_lite.processing.gpu import backproject as bp

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000x1570x1000,400x600x1000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference", default=None)
    parser.add_argument("--launches", default="1,2,4,8,14", help="launches over the angles")
    parser.add_argument("--bands", default="0,8,16,32,64")
    parser.add_argument("--configs", default="8,2,8,2,16,1,4,1,1;8,4,8,2,16,1,2,1,1;4,4,8,2,16,1,4,1,1;"
                                             "8,2,8,1,16,1,4,1,1")
    parser.add_argument("--modules", default=None,
                        help="','-separated copies of gpu/backproject.py: each timed with --plans instead of the sweep")
    parser.add_argument("--plans", default="",
                        help="with --modules: per size 'NXxNOMxNQ=angles:band,...' joined by ';' (angles 0: one launch; 'plan': the module's own)")
    args = parser.parse_args()
    rows = []
    reference = load_reference(args.reference) if args.reference else None
    if args.modules:
        return compare_modules(args, bp, reference, rows)
    best_plan = None
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(json.dumps({"device": props["name"].decode(), "l2_bytes": props["l2CacheSize"],
                      "sms": props["multiProcessorCount"]}), flush=True)
    for size in args.sizes.split(","):
        s = Slice(size, bp, reference, args.repeat, rows)
        n_om = s.g.n_om
        results = {}
        for launches in (int(v) for v in args.launches.split(",")):
            angles = -(-n_om // launches)
            angles = -(-angles // bp.AC) * bp.AC
            for band in (int(v) for v in args.bands.split(",")):
                results[(angles, band)] = s.variant(f"angles {angles} band {band}", bp.CONFIG, angles, band)
        if best_plan is None:
            best_plan = min(results, key=results.get)
        s.variant(f"plan() {bp.plan(n_om, s.g.n)}", bp.CONFIG, None, None)
        for text in args.configs.split(";"):
            config = tuple(int(v) for v in text.split(","))
            if config == bp.CONFIG:
                continue
            angles = -(-best_plan[0] // config[4]) * config[4]
            s.variant(f"config {text} angles {angles} band {best_plan[1]}", config, angles, best_plan[1])
            s.variant(f"config {text} one launch, rows", config, 1 << 30, 0)
        s = None
        cupy.get_default_memory_pool().free_all_blocks()
    print_rows(rows)


if __name__ == "__main__":
    main()
