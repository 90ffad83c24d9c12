"""Every shipped job plugin, registered on import (`jobs.load_plugins()` imports this module).

The modules that define plugins are imported here; more (integrate_scan, reconstruct_scan) are
registered by importing their modules below.
"""
from bliss_lite.processing import (
    jobs,  # noqa: F401  (dummy, sleep)
    pdf_scan,  # noqa: F401  (pdf_scan)
    scan_plugins,  # noqa: F401,E402  (integrate_scan, reconstruct_scan)
)
