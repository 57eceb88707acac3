"""The official SEDA 2.2 XSDs: found where setup installed them, compiled, used to validate.

The schemas are installed once, at setup, by `make seda-schemas` (part of `make install`,
`make test` and `make up`): infra/scripts/fetch-seda-xsd.sh downloads the pinned
`cubicweb-seda` wheel, checks its sha256 and extracts only its XSD files into
`<venv>/share/mutualis/seda/` (or `MUTUALIS_SEDA_XSD_DIR`). This module never downloads
anything: a missing directory is an error naming the make target, raised when a package is
exported or imported (the rest of the archive runs without the schemas). The schemas are
compiled offline (`no_network=True`: their imports resolve to the files next to them).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from lxml import etree

from archive.domain.errors import ArchiveError

MAIN = "seda-2.2-main.xsd"
INSTALL_HINT = "run `make seda-schemas` (infra/scripts/fetch-seda-xsd.sh)"


class SedaSchemasMissing(ArchiveError):
    """Setup did not install the schemas: packages cannot be validated, so none is made."""

    code = "seda_schemas_missing"
    status = 503


def default_schema_dir() -> Path:
    """Where the fetch script puts the schemas for this interpreter: inside its (virtual) env,
    so the place does not depend on the working directory."""
    return Path(sys.prefix) / "share" / "mutualis" / "seda"


def schema_dir(configured: Path | None = None) -> Path:
    """The directory holding the SEDA XSDs; `SedaSchemasMissing` when setup did not fill it."""
    directory = configured if configured is not None else default_schema_dir()
    if not (directory / MAIN).is_file():
        raise SedaSchemasMissing(
            f"the SEDA 2.2 schemas are not installed in {directory} ({MAIN} is missing): "
            f"{INSTALL_HINT}, or point MUTUALIS_SEDA_XSD_DIR at a directory holding them"
        )
    return directory


@cache
def seda_schema(xsd_dir: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    document = etree.parse(str(schema_dir(xsd_dir) / MAIN), parser)
    return etree.XMLSchema(document)


def validate(manifest: bytes, xsd_dir: Path) -> list[str]:
    """Validation errors of a SEDA 2.2 message (empty when valid)."""
    schema = seda_schema(xsd_dir)
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    document = etree.fromstring(manifest, parser)
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
