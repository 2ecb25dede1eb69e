"""Telemetry: what the server tells about itself (log lines)."""
