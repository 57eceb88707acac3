"""Test helpers for anything that signs: small PDFs, a SoftHSM token, the PKI and a dev TSA.

Owns pytest fixtures that start REAL components (a SoftHSM token in a temp dir, the dev PKI,
the dev TSA as a `python -m mutualis_trust.tsa` process on 127.0.0.1). Import the fixtures
into a conftest.py (`from mutualis_trust.testing import trust_env  # noqa: F401`). Tests that
need SoftHSM or openssl are skipped with a message saying what to install; checks by pdfsig
call `require_pdfsig()` (or use the `pdfsig` fixture), which skips likewise, and fails under
`CI=true`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from mutualis_trust.pades import pdfsig_available
from mutualis_trust.pkcs11 import SOFTHSM_MISSING, SoftHsm, TokenConfig, softhsm_available
from mutualis_trust.pki import DevPki

PDFSIG_MISSING = (
    "install poppler-utils and libnss3-tools for pdfsig and certutil "
    "(make installs them when run as root)"
)


def minimal_pdf(
    text: str = "Mutualis test document", pages: int = 1, *, padding_bytes: int = 0
) -> bytes:
    """A small valid PDF (Helvetica text, `pages` A4 pages) with an exact cross-reference table.

    `padding_bytes` adds an unreferenced stream of that size: a large document that is cheap to
    build, which a signer copies and hashes like any embedded image.
    """
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for n in range(pages):
        content = f"BT /F1 14 Tf 72 770 Td ({safe} - page {n + 1}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_ids[n] + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    if padding_bytes:
        filler = b"0" * padding_bytes
        objects.append(b"<< /Length %d >>\nstream\n" % len(filler) + filler + b"\nendstream")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encrypted_pdf(password: str = "secret") -> bytes:  # noqa: S107 - a test fixture
    """A password-protected PDF (RC4/AES via pyHanko), to check that uploads refuse it."""
    import io

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    reader = PdfFileReader(io.BytesIO(minimal_pdf()))
    writer = copy_into_new_writer(reader)
    writer.encrypt(password, password)  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TrustEnv:
    """A PKI, a SoftHSM token config and a running dev TSA, for one test session."""

    pki: DevPki
    token: TokenConfig
    tsa_url: str


@contextmanager
def running_tsa(pki: DevPki) -> Iterator[str]:
    """`python -m mutualis_trust.tsa` on a free loopback port until the block exits: its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutualis_trust.tsa", "--dir", str(pki.dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"dev TSA did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/tsa"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def require_pdfsig() -> None:
    """Skip the calling test, saying what to install, unless poppler's `pdfsig` can run; under
    `CI=true` fail instead: CI installs it, so its absence there is a broken set-up that a skip
    would hide. Call it right before the pdfsig checks, after everything else the test checks."""
    if pdfsig_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"pdfsig is missing on CI: {PDFSIG_MISSING}")
    pytest.skip(PDFSIG_MISSING)


@pytest.fixture
def pdfsig() -> None:
    """For tests that are about pdfsig: `@pytest.mark.usefixtures("pdfsig")`."""
    require_pdfsig()


@pytest.fixture(scope="session")
def trust_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrustEnv]:
    if not softhsm_available():
        pytest.skip(SOFTHSM_MISSING)
    if shutil.which("openssl") is None:
        pytest.skip("install openssl (make installs it when run as root)")
    root = tmp_path_factory.mktemp("trust")
    pki = DevPki.create(root / "pki")
    token = SoftHsm.provision(root / "hsm", "mutualis-test", "1234", "12345678")
    with running_tsa(pki) as url:
        yield TrustEnv(pki=pki, token=token, tsa_url=url)
