"""Side-by-side benchmarks of pullthrough against distribution's proxy mode and nginx.

`python -m bench.run` (or `make bench`) sets everything up on loopback, measures, and writes
`bench/RESULTS.md`; see `bench/README.md` for what each figure means.
"""
