"""`python -m identity`: run the identity service."""

from identity.bootstrap import run
from mutualis_kernel.runner import run_main

if __name__ == "__main__":
    run_main(run())
