"""Metadata: what is cached, where it came from, which repository may serve it."""
