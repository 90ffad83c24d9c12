"""Data: Redis launcher, publisher, live client and HDF5/NeXus writer (scan-engine issue).

Must import neither gevent nor the shell: analysis programs read scans with numpy alone.
"""
