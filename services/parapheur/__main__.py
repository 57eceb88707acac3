"""`python -m parapheur`: run the parapheur service."""

from mutualis_kernel.runner import run
from parapheur.bootstrap import wire
from parapheur.manifest import MANIFEST
from parapheur.settings import ParapheurSettings

if __name__ == "__main__":
    run(ParapheurSettings(), MANIFEST, wire)
