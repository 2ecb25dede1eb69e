"""pullthrough: a self-hosted pull-through cache for container images."""

__version__ = "0.1.0"
USER_AGENT = f"pullthrough/{__version__}"
