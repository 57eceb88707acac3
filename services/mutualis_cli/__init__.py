"""The `mutualis` command line: runs the platform locally and operates it."""
