"""Setup of the `test` session: fast mockup axes and a small Pilatus ROI for the test suite."""
SETUP_DONE = True
# 48 x 160 pixels from the beam centre outwards across the first module gap: rings and a gap
pilatus.roi = (816, 700, 48, 160)  # noqa: F821 - the session's detector
