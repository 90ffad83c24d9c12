"""`bliss-lite demo --pdf`: PDF-CT of the simulated sample, end to end.

Opens the `pdfct` session (90 keV, 0.25 m), gives the Pilatus a strip from the beam outwards
(Q to ~33 1/A), runs an XRD-CT scan with the integration (Q in 1/A), reconstruction and pdf
hooks, then compares each phase's PDF-CT map with the phantom and the G(r) of each phase's
pure region with the G(r) of its atoms, and draws them. Last line printed, JSON: {"hdf5",
"png", "gr_correlation": {phase: r}, "first_peak_error_A": {phase: A}, "map_correlation":
{phase: r}, ...}.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PDF_ROI = (848, 100, 96, 1375)  # one module's rows, from the beam (column ~100) to the far edge
ACQ_TIME = 0.01
PDF_OPTIONS = {"qmin": 0.8, "qmax": 25.0, "rpoly": 0.9, "rmax": 20.0}


def _pure_gr(gr, truth, r, reference_r, reference_g, known):
    """(r of the mean G(r) of the phase's pure voxels against its reference over 1-20 A, |error|
    of its first peak, that mean G(r))."""
    pure = truth > 0.999
    if not pure.any():
        pure = truth >= truth.max() * 0.95
    mean = gr[pure].mean(axis=0)
    reference = np.interp(r, reference_r, reference_g)
    window = (r >= 1.0) & (r <= 20.0)
    near = (r > 1.0) & (r < known + 0.3)
    return (float(np.corrcoef(mean[window], reference[window])[0, 1]),
            float(abs(r[near][np.argmax(mean[near])] - known)), mean, reference)


def figure(path, phases, maps, truths, r, means, references, scores, window_name, window_map):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(phases) + 1, 3, figsize=(10, 2.8 * (len(phases) + 1)))
    for row, phase in enumerate(phases):
        axes[row, 0].imshow(maps[phase], origin="lower", extent=(-1, 1, -1, 1))
        axes[row, 0].set_title(f"{phase}: PDF-CT map (r = {scores['map'][phase]:.3f})", fontsize=8)
        axes[row, 1].imshow(truths[phase], origin="lower", extent=(-1, 1, -1, 1))
        axes[row, 1].set_title(f"{phase}: ground truth", fontsize=8)
        ax = axes[row, 2]
        ax.plot(r, references[phase], lw=0.8, color="0.5", label="atoms")
        mean = means[phase]
        scale = float(mean @ references[phase]) / max(float(mean @ mean), 1e-30)  # G per voxel is per mean atom
        ax.plot(r, scale * mean, lw=0.8, color="C3", label=f"pure region x {scale:.2g}")
        ax.set_title(f"{phase}: G(r) (r = {scores['gr'][phase]:.3f})", fontsize=8)
        ax.set_xlabel("r (A)", fontsize=7)
        ax.legend(fontsize=6)
    axes[-1, 0].imshow(window_map, origin="lower", extent=(-1, 1, -1, 1))
    axes[-1, 0].set_title(f"mean G(r) in {window_name}", fontsize=8)
    axes[-1, 1].axis("off")
    axes[-1, 2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args):
    """The PDF-CT demonstration; returns the summary (the caller prints it as JSON)."""
    from bliss_lite.controllers.group import Group
    from bliss_lite.processing.phase_maps import correlation, ground_truth
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("pdfct", args.config)
    pilatus, sample = ns["pilatus_pdf"], ns["pdf_sample"]
    pilatus.roi = PDF_ROI
    ns["SCAN_SAVING"].sample = "pdfct_demo"
    print(f"demo --pdf: PDF-CT of the simulated sample ({', '.join(sample.phantom.names)}) at "
          f"{sample.energy_kev:.0f} keV: {args.nx} x {args.nomega} points, {pilatus.roi.rows} x {pilatus.roi.columns} "
          "frames", flush=True)
    session.scan_context.watchers[:] = []  # no table of points: the summary follows
    stages = [ns["omega"], ns["x"], ns["z"]]
    start = {axis: axis.position for axis in stages}
    try:
        radius = sample.phantom.radius
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -radius, radius, args.nx, [0.0], ACQ_TIME,
                           n_omega=args.nomega, fast_axis="x",
                           hooks={"integration": {"npt": 1000, "workers": args.workers, "unit": "q_A^-1",
                                                  "radial_range": [0.3, 30.0]},
                                  "reconstruction": {"method": args.method}, "pdf": dict(PDF_OPTIONS)})
    finally:
        Group(*start).move(start)
    result = scan.hook("pdf").result
    if result is None:
        raise RuntimeError("demo --pdf: the pdf hook produced nothing (see the warnings above)")
    recorded = scan.scan_info["sample"]["pdf"]["phases"]
    phases = [p for p in recorded if p in result["map_values"]]
    r, gr = np.asarray(result["r"]), result["gr_volume"][0]
    n = gr.shape[0]
    maps = {p: result["map_values"][p][0] for p in phases}
    truths = {p: ground_truth(sample.phantom, p, 0.0, n) for p in phases}
    scores = {"gr": {}, "peak": {}, "map": {}}
    means, references = {}, {}
    for p in phases:
        ref = recorded[p]
        scores["gr"][p], scores["peak"][p], means[p], references[p] = _pure_gr(
            gr, truths[p], r, np.asarray(ref["r_A"]), np.asarray(ref["G"]), ref["first_peak_A"])
        scores["map"][p] = float(correlation(maps[p], truths[p]))
    window_name = next(iter(result["window_values"]), None)
    png = Path(scan.filename).with_name(f"{Path(scan.filename).stem}_{scan.number}_pdf.png")
    figure(png, phases, maps, truths, r, means, references, scores, window_name,
           result["window_values"][window_name][0] if window_name else np.zeros((n, n)))
    for p in phases:
        print(f"demo --pdf: {p:11s} G(r) r = {scores['gr'][p]:.3f}  first peak off by {scores['peak'][p]:.3f} A  "
              f"map r = {scores['map'][p]:.3f}", flush=True)
    session.close()
    return {"hdf5": scan.filename, "entry": scan.entry, "png": str(png),
            "gr_correlation": {p: round(v, 4) for p, v in scores["gr"].items()},
            "first_peak_error_A": {p: round(v, 4) for p, v in scores["peak"].items()},
            "map_correlation": {p: round(v, 4) for p, v in scores["map"].items()},
            "pdf_file": result["file"], "frames": int(scan.data.count(pilatus.name)), "energy_kev": round(sample.energy_kev, 2)}
