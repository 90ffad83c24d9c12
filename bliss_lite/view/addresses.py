"""Whether an address or host name is this machine's own (loopback): the view's first guard."""
from __future__ import annotations

import ipaddress


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
