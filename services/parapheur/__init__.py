"""The parapheur service: approval and signature circuits of documents for every commune.

It owns circuit types, folders (event-sourced on PARAPHEUR_EVENTS), their PDFs (object store),
delegations and deadlines, and adds PAdES signatures through the `DocumentSigner` port.
"""
