"""`mutualis serve <service>`: run one service in this process, as `python -m <service>` would.

This is the container entry point: one image holds every service and the command picks one.
"""

from __future__ import annotations

import importlib.util
import os
import runpy

from mutualis_kernel.service import KNOWN_SERVICES


class UnknownService(LookupError):
    pass


def installed_services() -> list[str]:
    return [name for name in KNOWN_SERVICES if importlib.util.find_spec(name) is not None]


def check_service(name: str) -> None:
    installed = installed_services()
    if name in KNOWN_SERVICES and name in installed:
        return
    known = ", ".join(KNOWN_SERVICES)
    present = ", ".join(installed) or "none"
    if name in KNOWN_SERVICES:
        raise UnknownService(
            f"service {name!r} is not installed here (known: {known}; installed: {present})"
        )
    raise UnknownService(f"unknown service {name!r} (known: {known}; installed: {present})")


def serve(name: str) -> None:
    check_service(name)
    os.environ.setdefault("MUTUALIS_SERVICE_NAME", name)
    runpy.run_module(name, run_name="__main__", alter_sys=True)
