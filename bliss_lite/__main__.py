"""`python -m bliss_lite` is the same as the `bliss-lite` command."""
from bliss_lite.cli import main

raise SystemExit(main())
