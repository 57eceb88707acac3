"""The parapheur's use cases: load a folder, let the domain decide, store what it recorded."""
