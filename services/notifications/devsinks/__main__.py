"""`python -m notifications.devsinks --dir D --smtp-port P --sms-port Q`: run both dev sinks."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import uvicorn

from notifications.devsinks.servers import sms_app, smtp_controller


async def serve(directory: Path, smtp_port: int, sms_port: int) -> None:
    controller, _ = smtp_controller(directory, smtp_port)
    controller.start()
    try:
        config = uvicorn.Config(
            sms_app(directory), host="127.0.0.1", port=sms_port, log_level="warning"
        )
        await uvicorn.Server(config).serve()
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--sms-port", type=int, default=8026)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.dir, args.smtp_port, args.sms_port))


if __name__ == "__main__":
    main()
