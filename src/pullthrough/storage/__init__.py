"""Blob storage: drivers that know paths and bytes, never OCI."""
