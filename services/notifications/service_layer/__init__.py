"""Use cases of notifications: route events, deliver once, erase."""
