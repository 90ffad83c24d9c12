"""`bliss-lite demo`: the whole mission on the simulated sample, end to end.

Opens the `demo` session, gives the Pilatus a small strip of the detector (from the beam centre
outwards, so the patterns reach q ~ 50 nm^-1 while a frame renders in ~1 ms), runs an XRD-CT
scan (x sweeping, omega stepping) with the integration and reconstruction hooks, then
compares each reconstructed phase map with the phantom's ground truth and draws them side by
side with the summed pattern. The last line printed is JSON:
{"phase_correlation": {phase: r}, "hdf5": path, "png": path, ...}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEMO_ROI = (848, 737, 96, 240)  # rows 848-943 (one module), columns from the beam centre outwards
ACQ_TIME = 0.008


def _parser():
    parser = argparse.ArgumentParser(prog="bliss-lite demo", description=__doc__.splitlines()[0])
    parser.add_argument("--nx", type=int, default=32, help="beam positions across the sample (default 32)")
    parser.add_argument("--nomega", type=int, default=50, help="angles over 180 degrees (default 50)")
    parser.add_argument("--npt", type=int, default=500, help="q bins (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="local integration workers (default 2)")
    parser.add_argument("--method", choices=["fbp", "sirt"], default="fbp")
    parser.add_argument("--out", help="data root for the HDF5 file and the PNG (default: the demo session's)")
    parser.add_argument("--config", help="configuration directory (default: the shipped one)")
    parser.add_argument("--pdf", action="store_true", help="PDF-CT instead: the pdfct session, G(r) of every voxel "
                        "(bliss_lite/demo_pdf.py)")
    return parser


def _progress(scan_holder, total):
    """A line every 2 s until killed."""
    import gevent

    start = time.monotonic()
    while True:
        gevent.sleep(2.0)
        scan = scan_holder.get("scan")
        if scan is None:
            continue
        integration, reconstruction = scan.hook("integration"), scan.hook("reconstruction")
        integrated = len(integration.received) if integration is not None else 0
        live = reconstruction.live_updates if reconstruction is not None else 0
        print(f"demo: {time.monotonic() - start:5.1f} s  frames {scan.data.count('pilatus')}/{total}  "
              f"integrated {integrated}  live reconstructions {live}", flush=True)


def figure(path, result, truths, correlations, summed, radial, unit):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    phases = list(result["maps"])
    x_mm = np.asarray(result["x_mm"], float)  # the scanned positions: the slice spans them, any phantom's size
    half_step = (x_mm[-1] - x_mm[0]) / max(len(x_mm) - 1, 1) / 2
    extent = (x_mm[0] - half_step, x_mm[-1] + half_step) * 2
    fig, axes = plt.subplots(len(phases) + 1, 2, figsize=(6.5, 3.0 * (len(phases) + 1)))
    for row, phase in enumerate(phases):
        for col, (image, title) in enumerate(((result["maps"][phase][0], f"{phase}: reconstruction (r = {correlations[phase]:.3f})"),
                                              (truths[phase], f"{phase}: ground truth"))):
            ax = axes[row, col]
            ax.imshow(image, origin="lower", cmap="viridis", extent=extent)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("u (mm)", fontsize=8)
            ax.set_ylabel("v (mm)", fontsize=8)
    ax = plt.subplot2grid((len(phases) + 1, 2), (len(phases), 0), colspan=2, fig=fig)
    axes[-1, 0].remove()
    axes[-1, 1].remove()
    ax.plot(radial, summed, lw=0.8, color="k")
    rois = result["rois"] or {}  # a decomposition fits the whole pattern: no windows to draw
    colours = {p: plt.get_cmap("tab10")(i) for i, p in enumerate(rois)}
    for phase, roi in rois.items():
        ax.axvspan(roi.lo, roi.hi, alpha=0.35, label=phase, color=colours[phase])
    ax.set_xlabel(unit)
    ax.set_ylabel("summed intensity")
    ax.set_yscale("log")
    if rois:
        ax.legend(fontsize=7)
    ax.set_title("summed pattern" + (", phase ROIs" if rois else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args):
    if args.nx < 4 or args.nomega < 4:
        raise ValueError(f"demo: --nx and --nomega must be >= 4, got {args.nx}, {args.nomega}")
    if args.out:
        os.environ["BLISS_LITE_DATA_ROOT"] = str(Path(args.out).expanduser().resolve())
    import gevent

    from bliss_lite.processing.phase_maps import correlation, ground_truth
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("demo", args.config)
    pilatus, sample = ns["pilatus"], ns["xrdct_sample"]
    pilatus.roi = DEMO_ROI
    ns["SCAN_SAVING"].sample = "xrdct_demo"
    total = args.nx * args.nomega
    print(f"demo: XRD-CT of the simulated sample ({', '.join(sample.phantom.names)}): {args.nx} x {args.nomega} "
          f"points, {pilatus.roi.rows} x {pilatus.roi.columns} frames, {args.workers} integration workers", flush=True)
    holder = {}
    ticker = gevent.spawn(_progress, holder, total)
    # the demo prints its own progress line instead of the shell's table of 1600 points
    session.scan_context.watchers[:] = [lambda s: _Holder(holder, s)]
    stages = [ns["omega"], ns["x"], ns["z"]]
    start = {axis: axis.position for axis in stages}  # the stages are the sessions' own: put them back
    try:
        radius = sample.phantom.radius
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -radius, radius, args.nx, [0.0], ACQ_TIME,
                           n_omega=args.nomega, fast_axis="x",
                           hooks={"integration": {"npt": args.npt, "workers": args.workers},
                                  "reconstruction": {"method": args.method}})
    finally:
        ticker.kill()
        restored = _restore(start)
    result = scan.hook("reconstruction").result
    if result is None:
        raise RuntimeError("demo: the reconstruction produced nothing (see the warnings above)")
    n = result["maps"][next(iter(result["maps"]))].shape[-1]
    truths = {p: ground_truth(sample.phantom, p, 0.0, n) for p in result["maps"]}
    correlations = {p: float(correlation(result["maps"][p][0], truths[p])) for p in result["maps"]}
    integration = scan.hook("integration")
    summed = integration.pattern_sum  # the hook's running sum: the patterns themselves are on disk
    png = Path(scan.filename).with_name(f"{Path(scan.filename).stem}_{scan.number}_phases.png")
    figure(png, result, truths, correlations, summed, result["radial"], integration.settings.unit)
    for phase, r in correlations.items():
        print(f"demo: {phase:12s} r = {r:.3f}", flush=True)
    session.close()
    return {"phase_correlation": {p: round(r, 4) for p, r in correlations.items()}, "hdf5": scan.filename,
            "png": str(png), "entry": scan.entry, "frames": int(scan.data.count("pilatus")),
            "integrated_by_workers": len(integration.received) - integration.local_frames,
            "centre_of_rotation_mm": round(float(result["centre"]), 5),
            "live_reconstructions": scan.hook("reconstruction").live_updates, "stages_restored": restored}


def _restore(start):
    """Move the stages the demo scanned back to where they were, so the demo leaves the
    session (its monitors look through the sample where the stages are) as it found it."""
    from bliss_lite.controllers.group import Group

    Group(*start).move(start)
    back = {axis.name: round(axis.position, 6) for axis in start}
    print("demo: stages back where they were: " + ", ".join(f"{n} {p:g}" for n, p in back.items()), flush=True)
    return back


class _Holder:
    """A scan watcher that only remembers the running scan, for the progress line."""

    def __init__(self, holder, scan):
        holder["scan"] = scan

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv=None):
    args = _parser().parse_args(argv)
    started = time.monotonic()
    try:
        if args.pdf:
            from bliss_lite.demo_pdf import run as run_pdf

            if args.out:
                os.environ["BLISS_LITE_DATA_ROOT"] = str(Path(args.out).expanduser().resolve())
            summary = run_pdf(args)
        else:
            summary = run(args)
    except (ValueError, RuntimeError) as exc:
        print(f"bliss-lite demo: {exc}", file=sys.stderr)
        return 2
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary), flush=True)
    return 0
