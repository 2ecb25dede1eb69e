"""The metadata schema's Alembic migrations: `env.py` runs them over the connection the caller
hands in, `versions/` holds one module per revision (`migrating.py` decides when they run)."""
