"""`mutualis serve <service>`: run one service in this process, as `python -m <service>` would.

This is the container entry point: one image holds every service and the command picks one.
"""

from __future__ import annotations

import os
import runpy

from mutualis_kernel.service import installed_service_names


class UnknownService(LookupError):
    pass


def installed_services() -> list[str]:
    return installed_service_names()


def check_service(name: str) -> None:
    installed = installed_services()
    if name in installed:
        return
    present = ", ".join(installed) or "none"
    raise UnknownService(f"unknown service {name!r} (installed here: {present})")


def serve(name: str) -> None:
    check_service(name)
    os.environ.setdefault("MUTUALIS_SERVICE_NAME", name)
    runpy.run_module(name, run_name="__main__", alter_sys=True)
