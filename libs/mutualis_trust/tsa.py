"""RFC 3161 timestamps: a development TSA over HTTP, a client, and verification.

Owns the dev timestamp authority (an aiohttp endpoint that hands each request to
`openssl ts -reply` with the PKI's TSA key), the client that asks any RFC 3161 TSA for a token
(the dev one or a qualified one in production), and verification, which is done by
`openssl ts -verify` so that trust decisions are never reimplemented here.

Run the dev TSA as a process: `python -m mutualis_trust.tsa --dir PKI_DIR --port 8318`.
In-process (tests): `async with DevTsa.running(pki) as url: ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from aiohttp import web
from asn1crypto import algos, cms, core, tsp  # type: ignore[import-untyped]

from mutualis_trust.metrics import TrustMetrics, tsa_host
from mutualis_trust.pki import DevPki

log = logging.getLogger(__name__)

HashAlgorithm = Literal["sha256", "sha384", "sha512"]

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
#: A timestamp query is ~100 bytes; anything much larger is not one.
MAX_QUERY_BYTES = 16 * 1024
#: Policy OID of the development TSA (a private arc: it is not a qualified policy).
DEV_POLICY_OID = "1.3.6.1.4.1.99999.3161.1"


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161's TimeStampResp, whose token is OPTIONAL: absent from every refusal.

    asn1crypto declares the token mandatory, so a refusal fails to parse there as "Field
    time_stamp_token is missing", which hides the TSA's reason (the old dev-TSA flake).
    """

    _fields = [  # noqa: RUF012 - asn1crypto reads the spec from this class attribute
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TimestampError(Exception):
    """The TSA refused, was unreachable, or answered something that is not a valid token."""


class TimestampVerificationError(Exception):
    """`openssl ts -verify` rejected the token for this data (tampered data, wrong CA...)."""


@dataclass(frozen=True)
class TimestampToken:
    """A granted RFC 3161 timestamp.

    `response_der` is the whole TimeStampResp (what `.tsr` files hold and `openssl ts -verify
    -in` reads); `token_der` is the TimeStampToken inside it (a CMS SignedData, what a CAdES or
    PAdES signature embeds).
    """

    response_der: bytes
    token_der: bytes
    gen_time: dt.datetime
    serial: int
    hash_algorithm: str
    hashed_message: bytes
    policy: str
    nonce: int | None

    @classmethod
    def from_response(cls, response_der: bytes) -> TimestampToken:
        """Parse a TimeStampResp; raises `TimestampError` unless it grants a token."""
        try:
            resp = _TimeStampResp.load(response_der)
            status = resp["status"]["status"].native
            if status not in ("granted", "granted_with_mods"):
                text = resp["status"]["status_string"].native
                reason = " ".join(text) if isinstance(text, list) else text
                raise TimestampError(f"TSA refused the request: {status} {reason or ''}".strip())
            token = resp["time_stamp_token"]
            if isinstance(token, core.Void):
                raise TimestampError(f"not a timestamp response: {status} but no token")
            tst_info = token["content"]["encap_content_info"]["content"].parsed
            imprint = tst_info["message_imprint"]
            return cls(
                response_der=response_der,
                token_der=token.dump(),
                gen_time=tst_info["gen_time"].native,
                serial=tst_info["serial_number"].native,
                hash_algorithm=imprint["hash_algorithm"]["algorithm"].native,
                hashed_message=imprint["hashed_message"].native,
                policy=tst_info["policy"].dotted,
                nonce=tst_info["nonce"].native,
            )
        except TimestampError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise TimestampError(f"not a timestamp response: {e}") from None


def build_query(
    digest: bytes, hash_algorithm: HashAlgorithm = "sha256", *, nonce: int | None = None
) -> bytes:
    """A DER TimeStampReq for `digest` asking for the TSA certificate in the reply."""
    query: bytes = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": tsp.MessageImprint(
                {
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": hash_algorithm}),
                    "hashed_message": digest,
                }
            ),
            "nonce": nonce if nonce is not None else secrets.randbits(63),
            "cert_req": True,
        }
    ).dump()
    return query


def digest_of(data: bytes, hash_algorithm: HashAlgorithm = "sha256") -> bytes:
    return hashlib.new(hash_algorithm, data).digest()


async def timestamp(
    url: str,
    data: bytes,
    *,
    is_digest: bool = False,
    hash_algorithm: HashAlgorithm = "sha256",
    timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
    metrics: TrustMetrics | None = None,
) -> TimestampToken:
    """Ask the TSA at `url` to timestamp `data` (or, with `is_digest=True`, its digest).

    Checks that the reply answers this request (same imprint, same nonce) before returning.
    With `metrics`, each request sent is counted, as granted or failed.
    """
    digest = data if is_digest else digest_of(data, hash_algorithm)
    size = hashlib.new(hash_algorithm).digest_size
    if len(digest) != size:
        raise ValueError(f"a {hash_algorithm} digest has {size} bytes, not {len(digest)}")
    owned = client is None
    http = client or httpx.AsyncClient(timeout=timeout)
    try:
        # A reply that does not even parse as a TimeStampResp (seen rarely from the dev TSA
        # on a loaded machine) is asked again with a fresh nonce; a refusal is final.
        for attempt in range(3):
            nonce = secrets.randbits(63)
            query = build_query(digest, hash_algorithm, nonce=nonce)
            granted = False
            try:
                try:
                    reply = await http.post(
                        url, content=query, headers={"Content-Type": QUERY_TYPE}
                    )
                except httpx.HTTPError as e:
                    raise TimestampError(f"TSA {url} unreachable: {e!r}") from None
                if reply.status_code != 200:
                    raise TimestampError(
                        f"TSA {url} answered HTTP {reply.status_code}: {reply.text[:200]}"
                    )
                try:
                    token = TimestampToken.from_response(reply.content)
                except TimestampError as error:
                    if attempt == 2 or "not a timestamp response" not in str(error):
                        raise
                    await asyncio.sleep(0.2)
                    continue
                if token.hashed_message != digest or token.nonce != nonce:
                    raise TimestampError(
                        "the TSA answered for another request (imprint or nonce differ)"
                    )
                granted = True
                return token
            finally:
                if metrics is not None:
                    metrics.timestamp_requested(tsa_host(url), granted)
    finally:
        if owned:
            await http.aclose()
    raise AssertionError("unreachable")  # pragma: no cover


def verify_timestamp(
    token: TimestampToken | bytes,
    data: bytes,
    ca_pem: Path,
    *,
    is_digest: bool = False,
    untrusted_pem: Path | None = None,
) -> None:
    """Verify a token over `data` (or its digest) with `openssl ts -verify` against `ca_pem`.

    `token` is a `TimestampToken` or the DER of a TimeStampResp (`.tsr`). Raises
    `TimestampVerificationError` with openssl's explanation. Blocking (a subprocess): call it
    through `asyncio.to_thread` from async code.
    """
    response_der = token.response_der if isinstance(token, TimestampToken) else token
    with tempfile.TemporaryDirectory(prefix="mutualis-ts-") as tmp:
        tsr = Path(tmp) / "token.tsr"
        tsr.write_bytes(response_der)
        cmd = ["openssl", "ts", "-verify", "-in", str(tsr), "-CAfile", str(ca_pem)]
        if is_digest:
            cmd += ["-digest", data.hex()]
        else:
            payload = Path(tmp) / "data"
            payload.write_bytes(data)
            cmd += ["-data", str(payload)]
        if untrusted_pem is not None:
            cmd += ["-untrusted", str(untrusted_pem)]
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or "Verification: OK" not in result.stdout:
        raise TimestampVerificationError(
            (result.stdout + result.stderr).strip() or "openssl ts -verify failed"
        )


# --- the development TSA ----------------------------------------------------------------------


def write_tsa_config(pki: DevPki, state_dir: Path, *, last_serial: int | None = None) -> Path:
    """The `openssl ts` configuration for the PKI's TSA key, with its serial file in `state_dir`.

    A new serial file holds `last_serial` (openssl hands out the next number), or a random one
    so that two state dirs (tests, `mutualis up`) never hand out the same serials; an existing
    serial file is kept.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    serial = state_dir / "serial"
    if not serial.exists():
        start = last_serial if last_serial is not None else secrets.randbits(48)
        # An even number of hex digits: openssl refuses to read an odd one ("odd number of
        # chars") and then refuses the request. Unpadded, one random start in 16 was odd.
        digits = f"{start:x}"
        serial.write_text(("0" * (len(digits) % 2)) + digits + "\n")
    chain = state_dir / "chain.pem"
    _replace(chain, pki.tsa_cert_path.read_bytes() + pki.ca_pem_path.read_bytes())
    conf = state_dir / "tsa.cnf"
    _replace(
        conf,
        "[ tsa ]\n"
        "default_tsa = dev_tsa\n"
        "[ dev_tsa ]\n"
        f"dir = {state_dir}\n"
        f"serial = {serial}\n"
        "crypto_device = builtin\n"
        f"signer_cert = {pki.tsa_cert_path}\n"
        f"certs = {chain}\n"
        f"signer_key = {pki.tsa_key_path}\n"
        "signer_digest = sha256\n"
        f"default_policy = {DEV_POLICY_OID}\n"
        "digests = sha256, sha384, sha512\n"
        "accuracy = secs:1\n"
        "clock_precision_digits = 0\n"
        "ordering = yes\n"
        "tsa_name = yes\n"
        "ess_cert_id_chain = no\n"
        "ess_cert_id_alg = sha256\n".encode(),
    )
    return conf


def _replace(path: Path, content: bytes) -> None:
    # Written aside then renamed: an `openssl ts` running meanwhile reads the old file or the
    # new one, never a truncated one.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    partial.write_bytes(content)
    os.replace(partial, path)


def _openssl_reply(config: Path, state_dir: Path, query_der: bytes) -> bytes:
    """One `openssl ts -reply`, holding the state dir's lock (blocking: run it in a thread).

    openssl reads, increments and rewrites the serial file without locking it: two replies at
    once in one state dir make one of them read a half-written file, and openssl then refuses
    the request ("Error during serial number generation."). The lock is `flock` on a file in
    the state dir, so it holds across threads and processes sharing that directory.
    """
    with (state_dir / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        with tempfile.TemporaryDirectory(prefix="tsq-", dir=state_dir) as tmp:
            tsq, tsr = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            tsq.write_bytes(query_der)
            result = subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(config),
                    "-queryfile",
                    str(tsq),
                    "-out",
                    str(tsr),
                ],
                capture_output=True,
            )
            if result.returncode != 0 or not tsr.exists():
                output = (result.stdout + result.stderr).decode(errors="replace")
                raise TimestampError(f"openssl ts -reply failed: {output[-500:]}")
            return tsr.read_bytes()


class DevTsa:
    """The development timestamp authority: `openssl ts -reply` behind an HTTP endpoint.

    Each instance keeps its serial file in a state directory of its own (a fresh one under
    `<pki>/tsa/` unless `state_dir` is given, removed by `close()`), so two TSAs on one PKI
    (a test session's and an in-process one, `mutualis up` restarting) never share it; two
    given the same `state_dir` take turns through its lock file.
    """

    def __init__(self, pki: DevPki, state_dir: Path | None = None) -> None:
        self.pki = pki
        self._owns_state_dir = state_dir is None
        if state_dir is None:
            (pki.dir / "tsa").mkdir(parents=True, exist_ok=True)
            state_dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=pki.dir / "tsa"))
        self.state_dir = state_dir
        self.config = write_tsa_config(pki, self.state_dir)
        # Requests queue here rather than as threads blocked on the state dir's lock.
        self._lock = asyncio.Lock()

    def close(self) -> None:
        """Remove the state directory this instance created (none given to it)."""
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def reply(self, query_der: bytes) -> bytes:
        """The DER TimeStampResp for a DER TimeStampReq."""
        try:
            tsp.TimeStampReq.load(query_der).native  # noqa: B018 - parses fully, raises if malformed
        except (ValueError, TypeError) as e:
            raise TimestampError(f"malformed timestamp query: {e}") from None
        async with self._lock:
            # A thread, not an asyncio subprocess: if the request is cancelled, the reply still
            # finishes under the state dir's lock instead of racing the next one.
            return await asyncio.to_thread(_openssl_reply, self.config, self.state_dir, query_der)

    async def checked_reply(self, query_der: bytes) -> bytes:
        """`reply`, with a refusal logged with openssl's reason (it goes back as made)."""
        der = await self.reply(query_der)
        try:
            TimestampToken.from_response(der)
        except TimestampError as error:
            log.warning("tsa: %s", error)
        return der

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_QUERY_BYTES)
        app.router.add_post("/", self._handle)
        app.router.add_post("/tsa", self._handle)
        app.router.add_get("/healthz", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_type != QUERY_TYPE:
            return web.Response(status=415, text=f"expected Content-Type {QUERY_TYPE}")
        body = await request.read()
        try:
            der = await self.checked_reply(body)
        except TimestampError as e:
            return web.Response(status=400, text=str(e))
        return web.Response(body=der, content_type=REPLY_TYPE)

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        pki: DevPki,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
    ) -> AsyncIterator[str]:
        """Serve in this event loop; yields the URL (port 0 picks a free port)."""
        tsa = cls(pki, state_dir)
        runner = web.AppRunner(tsa.app(), access_log=None)
        try:
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            bound = sockets[0].getsockname()[1] if sockets else port
            yield f"http://{host}:{bound}/tsa"
        finally:
            await runner.cleanup()
            tsa.close()


async def _serve(directory: Path, host: str, port: int, state_dir: Path | None) -> None:
    pki = DevPki.load(directory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with DevTsa.running(pki, host=host, port=port, state_dir=state_dir) as url:
        log.info("dev TSA listening on %s (pid %d)", url, os.getpid())
        print(f"dev TSA listening on {url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mutualis development RFC 3161 TSA")
    parser.add_argument("--dir", type=Path, required=True, help="PKI directory (DevPki)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8318)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the serial file lives (default: a fresh directory under PKI_DIR/tsa)",
    )
    parser.add_argument("--create", action="store_true", help="create the PKI if missing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.create:
        DevPki.load_or_create(args.dir)
    asyncio.run(_serve(args.dir, args.host, args.port, args.state_dir))


if __name__ == "__main__":
    main()

__all__ = [
    "DevTsa",
    "TimestampError",
    "TimestampToken",
    "TimestampVerificationError",
    "build_query",
    "timestamp",
    "verify_timestamp",
]
