"""HTTP and event entrypoints of the archive."""
