"""`python -m identity`: run the identity service."""

import asyncio

from identity.bootstrap import run

if __name__ == "__main__":
    asyncio.run(run())
