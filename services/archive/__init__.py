"""The archive service: the metropolis's electronic vault (in the spirit of NF Z42-013 / ISO 14641).

It owns archived records (content in the `archive_content` Object Store, R3; metadata
event-sourced on ARCHIVE_EVENTS with a searchable KV projection), the per-tenant hash-chained
journal and its RFC 3161 seals (ARCHIVE_JOURNAL), the fixity audit, retention, legal holds,
disposal with certificates of destruction, and SEDA 2.2 export/import.
"""
