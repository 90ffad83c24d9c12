"""Scan engine (acquisition chain, step and continuous scans): arrives with the scan-engine issue."""
