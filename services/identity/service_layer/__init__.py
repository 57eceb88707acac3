"""Use cases of the identity service, written against the repositories."""
