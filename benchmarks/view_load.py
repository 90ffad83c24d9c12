#!/usr/bin/env python3
"""Benchmark: what live-view pages cost a scan, and how fast the frame view refreshes.

1. Step-scan per-point cost with 0, 1 and 5 pages of `bliss-lite view` open in headless
   Chromium (one browser, five tabs: the "0" tabs show about:blank, so the idle browser is
   there in every case). The tabs are opened and closed through the DevTools HTTP endpoint
   (/json/new, /json/close) and nothing is attached to them while the scan runs, as in a
   scientist's browser: an automation driver attached to a page (Playwright's CDP session,
   with its network and runtime domains) more than doubles the renderer's CPU, so that case
   is measured apart ("5 automated": five Playwright pages of a second browser).
   `ascan(m4, 0, 1, N-1, 0, diode1, diode2, diode3)` in the `test` session, saving and
   publishing, in its own process; the conditions are interleaved (0, 1, 5, ...) so drifts of
   the machine hit them alike; medians compared. Goal: 1 and 5 pages within 5% of none.
   Also "5 streams": five event streams read by plain HTTP clients (pages on other hosts:
   the view server's work without the browsers' CPU on this machine). After the runs, the
   plain tabs are looked at once (attached then) to check that they drew every point.
2. Frame view refresh during a 250 Hz full-frame acquisition (`fscan` of the demo session's
   Pilatus 2M, frames replayed from a bank as benchmarks/xrdct_acquisition.py does): distinct
   frames the page displayed per second of scan. Goal >= 5 Hz; the scan must keep 250 Hz.
Everything runs on this machine (2 cores): the scan, Redis, the view server and Chromium.
Usage: python benchmarks/view_load.py [--points N] [--repeat R] [--frames N]
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SETTLE_S = 4.0
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


# -- the scan side: a session in its own process, driven line by line ---------------------------
def scan_process(kind, points, frames):
    """Runs in a child: answers each line on stdin with one JSON line (one scan's figures)."""
    from gevent import monkey

    monkey.patch_all()
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("test" if kind == "steps" else "demo", ROOT / "config")
    session.scan_context.watchers.clear()
    if kind == "steps":
        from bliss_lite.scans.step import ascan

        counters = [ns["diode1"], ns["diode2"], ns["diode3"]]
        ascan(ns["m4"], 0, 1, 99, 0, *counters)  # warm-up

        def one():
            t0 = time.perf_counter()
            ascan(ns["m4"], 0, 1, points - 1, 0, *counters)
            return {"ms_per_point": (time.perf_counter() - t0) / points * 1e3}
    else:
        import numpy as np

        from bliss_lite.data import bslz4
        from bliss_lite.scans.continuous_scans import fscan

        pilatus, omega, sample = ns["pilatus"], ns["omega"], ns["xrdct_sample"]
        model, rng = sample.model(pilatus.roi), np.random.default_rng(0)
        pilatus.frame_bank = [bslz4.compress(model.frame(rng.uniform(-0.9, 0.9), rng.uniform(0, 180), 0.0, 0.003)[0])
                              for _ in range(32)]
        period = 1 / 250.0
        step = min(1.0, 0.9 * omega.velocity * period)

        def one():
            t0 = time.perf_counter()
            scan = fscan(omega, 0.0, step, frames, period, pilatus)
            report = scan.scan_info["frames"]["pilatus"]
            return {"wall_s": time.perf_counter() - t0, "fps": scan.scan_info["sweep"]["handled_rate_hz"],
                    "dropped": report["dropped"], "frame_shape": list(pilatus.shape)}
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        print(json.dumps(one()), flush=True)
    session.close()


class Scans:
    def __init__(self, kind, points, frames):
        self.child = subprocess.Popen([sys.executable, __file__, "--child", kind, "--points", str(points),
                                       "--frames", str(frames)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, cwd=ROOT / "benchmarks")
        assert self._answer()["ready"]

    def _answer(self):
        """The next JSON line of the child (a session may print other lines)."""
        for line in self.child.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the {self.child.args[3]} scan process ended")

    def run(self):
        self.child.stdin.write("go\n")
        self.child.stdin.flush()
        return self._answer()

    def close(self):
        self.child.stdin.close()
        self.child.wait(60)


# -- the viewers --------------------------------------------------------------------------------
class Viewers:
    """One headless Chromium with five tabs; show(n) points n of them at the view."""

    def __init__(self, url, tabs=5):
        from playwright.sync_api import sync_playwright

        self.url = url
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        self.pages = [self.browser.new_page(viewport={"width": 1400, "height": 1100}) for _ in range(tabs)]
        self.shown = 0

    def show(self, n, settle=True):
        for i, page in enumerate(self.pages):
            if i < n and not page.url.startswith(self.url.split("?")[0]):
                page.goto(self.url)
                page.wait_for_function("window.blissView && window.blissView.connected")
            elif i >= n and page.url != "about:blank":
                page.goto("about:blank")
        self.shown = n
        if settle:
            time.sleep(SETTLE_S)  # pages loaded and drawn: the steady state is measured, not page loads

    def frames(self, i=0):
        return self.pages[i].evaluate("blissView.frames")

    def close(self):
        self.browser.close()
        self.playwright.stop()


class PlainTabs:
    """One headless Chromium with five tabs and no automation attached: tabs are opened and
    closed through the DevTools HTTP endpoint only; show(n) makes n of them the view."""

    def __init__(self, url, tabs=5):
        import tempfile

        self.url, self.tabs = url, tabs
        self.profile = tempfile.TemporaryDirectory(prefix="bl_view_chromium_")
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile.name}",
                                         "--remote-debugging-port=0", "--window-size=1400,1100", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{port_file.read_text().split()[0]}"
        self.opened = []  # [target id, showing the view?]
        for _ in range(tabs):
            self.opened.append([self._new("about:blank"), False])
        for target in self._targets():  # the start-up tab
            if target["id"] not in {t for t, _ in self.opened}:
                self._call(f"/json/close/{target['id']}")

    def _call(self, path, method="GET"):
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(self.endpoint + path, method=method), timeout=30) as reply:
            return json.loads(reply.read() or b"null") if "json/close" not in path else None

    def _targets(self):
        return [t for t in self._call("/json/list") if t["type"] == "page"]

    def _new(self, url):
        return self._call(f"/json/new?{url}", method="PUT")["id"]

    def show(self, n):
        for i, (target, viewing) in enumerate(self.opened):
            if (i < n) != viewing:  # a tab cannot be navigated from here: close it, open the other page
                self._call(f"/json/close/{target}")
                self.opened[i] = [self._new(self.url if i < n else "about:blank"), i < n]
        time.sleep(SETTLE_S)

    def check(self, playwright):
        """Attach once (after the timed runs) and read what each view tab shows."""
        browser = playwright.chromium.connect_over_cdp(self.endpoint)
        try:
            return [page.evaluate("[document.visibilityState, blissView.points, blissView.desc && blissView.desc.points]")
                    for context in browser.contexts for page in context.pages if page.url.startswith("http")]
        finally:
            browser.close()  # disconnects; the browser and its tabs stay

    def close(self):
        self.process.terminate()
        self.process.wait(30)
        self.profile.cleanup()


class Streams:
    """Event streams read by plain HTTP clients: the view server's side of pages that run on
    other hosts (the server still reads Redis and sends every message, no browser here)."""

    def __init__(self, url, count):
        import threading
        import urllib.request

        self.stop = threading.Event()

        def read():
            with urllib.request.urlopen(url.split("?")[0].rstrip("/") + "/events", timeout=60) as stream:
                while not self.stop.is_set() and stream.readline():
                    pass
        self.threads = [threading.Thread(target=read, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()
        time.sleep(SETTLE_S)

    def close(self):
        self.stop.set()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--frames", type=int, default=2500)
    parser.add_argument("--child", choices=["steps", "frames"])
    args = parser.parse_args()
    if args.child:
        return scan_process(args.child, args.points, args.frames)
    with private_environment("bl_view_"):
        result = run(args)
    print(json.dumps(result))


def run(args):
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data.redis_server import ensure_server

    ensure_server(run_dir())
    server = subprocess.Popen([sys.executable, "-m", "bliss_lite", "view", "--port", "0"], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    url = server.stdout.readline().split(" on ")[1].strip()
    viewers, tabs = Viewers(url), PlainTabs(url)
    try:
        steps = Scans("steps", args.points, args.frames)
        per_point = {0: [], 1: [], 5: [], "5 streams": [], "5 automated": []}
        steps.run()  # one scan before timing: files and Redis streams exist
        for _ in range(args.repeat):
            for n in per_point:
                viewers.show(5 if n == "5 automated" else 0, settle=False)
                tabs.show(n if isinstance(n, int) else 0)
                streams = Streams(url, 5) if n == "5 streams" else None
                per_point[n].append(steps.run()["ms_per_point"])
                if streams:
                    streams.close()
        tabs.show(5)
        steps.run()
        time.sleep(SETTLE_S)  # the last message and draw
        shown_points = tabs.check(viewers.playwright)
        tabs.show(0)
        steps.close()
        frames = Scans("frames", args.points, args.frames)
        viewers.show(1)
        before = viewers.frames()
        acquisition = frames.run()
        shown = viewers.frames() - before
        frames.close()
    finally:
        viewers.close()
        tabs.close()
        server.terminate()
    median = {n: statistics.median(v) for n, v in per_point.items()}
    return {
        "benchmark": "view_load", "date": time.strftime("%Y-%m-%d"), "points": args.points, "repeat": args.repeat,
        "ms_per_point_no_view": round(median[0], 5), "ms_per_point_1_view": round(median[1], 5),
        "ms_per_point_5_views": round(median[5], 5),
        "ratio_1_view": round(median[1] / median[0], 3), "ratio_5_views": round(median[5] / median[0], 3),
        "ms_per_point_5_remote_streams": round(median["5 streams"], 5),
        "ratio_5_remote_streams": round(median["5 streams"] / median[0], 3),
        "ms_per_point_5_automated_views": round(median["5 automated"], 5),
        "ratio_5_automated_views": round(median["5 automated"] / median[0], 3),
        "plain_tabs_after_a_scan": shown_points,
        "runs_ms_per_point": {str(n): [round(x, 5) for x in v] for n, v in per_point.items()},
        "noise_no_view_max_over_min": round(max(per_point[0]) / min(per_point[0]), 3),
        "frame_acquisition": {"frames": args.frames, "rate_hz": 250, "fps": round(acquisition["fps"], 1),
                              "dropped": acquisition["dropped"], "frame_shape": acquisition["frame_shape"],
                              "wall_s": round(acquisition["wall_s"], 2)},
        "frames_shown": shown, "frame_view_hz": round(shown / acquisition["wall_s"], 1),
    }


if __name__ == "__main__":
    main()
