"""Helpers for the live view tests: the view server as a child process."""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


class ViewServer:
    """`python -m bliss_lite view --port 0` as a child process; .url is where it listens.
    Its output goes to a file, so that a failed request can say what the server logged."""

    def __init__(self, *args, env=None):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bliss_lite_view_", suffix=".log")
        self.process = subprocess.Popen([sys.executable, "-m", "bliss_lite", "view", "--port", "0", *args],
                                        stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        for _ in range(600):  # a hang guard, not a timing: the server prints its address when up
            line = self.output().partition("\n")[0]
            if "Live view of" in line or self.process.poll() is not None:
                break
            time.sleep(0.1)
        assert "Live view of" in line, self.output()
        self.url = line.split(" on ")[1].strip()
        self.base = self.url.split("?")[0].rstrip("/")

    def output(self):
        with open(self.log.name) as log:
            return log.read()

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                body = reply.read()
                return json.loads(body) if reply.headers["Content-Type"].startswith("application/json") else body
        except urllib.error.HTTPError as error:
            if error.code >= 500:  # the server's own traceback says why (logged after the reply went)
                time.sleep(1)
                error.msg = f"{error.msg}; the view server logged:\n{self.output()[-1500:]}"
            raise

    def close(self):
        self.process.terminate()
        self.process.wait(10)
        self.log.close()
