"""Setup of the `test` session: fast mockup axes for the test suite."""
SETUP_DONE = True
