"""Scan jobs: which images are scanned and when (first cache, on demand, after a vulnerability
database update), a bounded pool of them per worker, and their states."""
