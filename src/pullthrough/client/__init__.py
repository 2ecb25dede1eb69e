"""Clients of the admin API: the CLI's connection to a running server."""
