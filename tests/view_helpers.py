"""Helpers for the live view tests: the view server as a child process."""
import json
import os
import subprocess
import sys
import urllib.request


class ViewServer:
    """`python -m bliss_lite view --port 0` as a child process; .url is where it listens."""

    def __init__(self, *args, env=None):
        self.process = subprocess.Popen([sys.executable, "-m", "bliss_lite", "view", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **(env or {})})
        line = self.process.stdout.readline()
        assert "Live view of" in line, line + self.process.stdout.read()
        self.url = line.split(" on ")[1].strip()
        self.base = self.url.split("?")[0].rstrip("/")

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
            return json.loads(body) if reply.headers["Content-Type"].startswith("application/json") else body

    def close(self):
        self.process.terminate()
        self.process.wait(10)
