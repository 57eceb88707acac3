"""Adapters of the archive: JetStream stores, the content store, the TSA, SEDA packages."""
