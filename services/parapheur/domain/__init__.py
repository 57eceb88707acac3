"""The parapheur's domain: circuits, folders and delegations. Pure: no I/O, no frameworks."""
