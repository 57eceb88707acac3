"""`python -m archive`: run the archive service."""

from archive.bootstrap import wire
from archive.manifest import MANIFEST
from archive.settings import ArchiveSettings
from mutualis_kernel.runner import run

if __name__ == "__main__":
    run(ArchiveSettings(), MANIFEST, wire)
