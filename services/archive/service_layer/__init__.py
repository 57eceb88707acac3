"""The archive's use cases, over ports (no FastAPI here)."""
