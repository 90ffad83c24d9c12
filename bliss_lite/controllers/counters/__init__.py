"""Counters (things `ct` and scans read) and measurement groups."""
