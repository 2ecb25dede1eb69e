"""Talking to a running server, without typer: the admin API client, cache naming, prefetch,
mirror configuration for container runtimes, and image references rewritten in YAML."""
