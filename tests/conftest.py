pytest_plugins = ["mutualis_kernel.testing.fixtures"]
