"""Setup of the `demo` session: runs in the session namespace after its objects are built."""
print("Welcome to the bliss_lite demo beamline (ID15-like, simulated hardware).")
print("Try: wa()   umv(srot, 5)   wm(srot, sby)   lsmot()   lscnt()   lsmg()")
