"""Integration tests: real upstream registries, a real pullthrough server, real clients."""
