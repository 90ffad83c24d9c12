"""The live view: a web page that follows scans from Redis (`bliss-lite view`), and the static
export of a saved scan to PNG (`bliss-lite plot FILE ENTRY -o out.png`)."""
