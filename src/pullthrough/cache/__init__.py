"""The pull-through service: routing, freshness, single-flight and verified fills."""
