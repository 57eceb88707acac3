# One instance of each shared fixture for the whole session: the trust fixture in particular
# must exist once, because SoftHSM reads its configuration once per process.
pytest_plugins = ["mutualis_kernel.testing.fixtures", "mutualis_trust.testing"]
