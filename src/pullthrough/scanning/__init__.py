"""Vulnerability scanning of cached images: what an image holds (inventory), what is known to be
wrong with it (the vulnerability database and matching), scan jobs, results and the gate."""
