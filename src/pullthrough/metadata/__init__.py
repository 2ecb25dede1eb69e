"""The metadata database: its SQL schema and, one module per concept, the queries over it, for
SQLite (the default) and PostgreSQL alike. `store.MetadataStore` opens it; `opening` from the
settings."""
