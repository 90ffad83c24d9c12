"""Setup of the `demo` session: runs in the session namespace after its objects are built."""
plotselect(xtal)  # noqa: F821 - the peak tools follow the crystal's diffracted intensity
print("Welcome to the bliss_lite demo beamline (ID15-like, simulated hardware).")
print("Try: wa()   umv(srot, 5)   ct(0.1)   dscan(sby, -1, 1, 20, 0.05)   cen()   goto_cen()   lsmg()")
print(f"Scans are saved in {SCAN_SAVING.filename}")  # noqa: F821 - set by the session
