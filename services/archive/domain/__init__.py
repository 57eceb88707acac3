"""The archive's pure domain: records, retention, formats, the journal's hashing and seals."""
