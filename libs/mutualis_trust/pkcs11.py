"""Keys behind PKCS#11: token configuration, SoftHSM provisioning, key generation, signers.

Owns every call into a PKCS#11 module. Private keys are generated inside the token as
sensitive and non-extractable EC P-256 keys; only their public halves come out (for the CA to
certify). Signing goes through pyHanko's `PKCS11Signer` on a logged-in session, so a PDF is
signed by the token itself.

Process-wide facts this module has to respect: a PKCS#11 module is initialised once per process
(python-pkcs11 caches it by path), and SoftHSM reads `SOFTHSM2_CONF` at that moment. So one
process uses one SoftHSM configuration; `Token.open` refuses a second, different one.

It must not decide policy (which key signs what): that is `identities.py` and the services.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pkcs11
from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pydantic import BaseModel, ConfigDict, SecretStr
from pyhanko.sign.pkcs11 import PKCS11Signer
from pyhanko.sign.signers import SimpleSigner

log = logging.getLogger(__name__)

#: Where Debian/Ubuntu (and most distributions) put SoftHSM's PKCS#11 module.
SOFTHSM_MODULE_CANDIDATES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib64/pkcs11/libsofthsm2.so"),
    Path("/opt/homebrew/lib/softhsm/libsofthsm2.so"),
)

#: The skip reason tests use when SoftHSM is absent.
SOFTHSM_MISSING = "install softhsm2 (make installs it when run as root)"

#: OID of the NIST P-256 curve (secp256r1 / prime256v1).
P256_OID = "1.2.840.10045.3.1.7"


class TokenError(Exception):
    """The token is missing, locked, misconfigured, or a key is absent or duplicated."""


class TokenConfig(BaseModel):
    """How to reach a PKCS#11 token. In production the PIN comes from a secret."""

    model_config = ConfigDict(frozen=True)

    module_path: Path
    token_label: str
    user_pin: SecretStr
    so_pin: SecretStr | None = None
    #: SoftHSM only: the configuration file naming its token directory (`SOFTHSM2_CONF`).
    softhsm2_conf: Path | None = None


def find_softhsm_module() -> Path | None:
    """SoftHSM's PKCS#11 module on this machine, if installed."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if candidate.exists():
            return candidate
    return None


def softhsm_available() -> bool:
    """Both the module and `softhsm2-util` (to create tokens) are installed."""
    return find_softhsm_module() is not None and shutil.which("softhsm2-util") is not None


def software_fallback_allowed(dev_mode: bool, module_path: Path | None = None) -> bool:
    """Whether signing may use software keys because no PKCS#11 module is present.

    Only in dev mode, and never silently: it logs a warning every time it says yes. Outside dev
    mode a missing module is an error the caller must report.
    """
    module = module_path if module_path is not None else find_softhsm_module()
    if module is not None and Path(module).exists():
        return False
    if not dev_mode:
        return False
    log.warning(
        "NO PKCS#11 MODULE: signing with SOFTWARE KEYS on disk. This is acceptable for local "
        "development only; install softhsm2 or configure an HSM (module %s not found).",
        module,
    )
    return True


def software_signer(
    key_pem: bytes, certificate: x509.Certificate, ca_chain: list[x509.Certificate]
) -> SimpleSigner:
    """A pyHanko signer over a software key: the dev-mode fallback only (see above)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    from asn1crypto import keys as asn1_keys

    return SimpleSigner(
        signing_cert=to_asn1(certificate),
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=_registry(ca_chain),
    )


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    """A `cryptography` certificate as the asn1crypto object pyHanko works with."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _registry(ca_chain: list[x509.Certificate]) -> Any:
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    return SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
        [to_asn1(c) for c in ca_chain]
    )


def key_id(label: str) -> bytes:
    """CKA_ID of a key, derived from its label so public and private halves pair up."""
    return hashlib.sha256(label.encode()).digest()[:16]


# --- SoftHSM provisioning (development and tests) ------------------------------------------


class SoftHsm:
    """Creates SoftHSM tokens whose files live inside a run directory."""

    @staticmethod
    def write_config(directory: Path) -> Path:
        directory = Path(directory)
        tokendir = directory / "tokens"
        tokendir.mkdir(parents=True, exist_ok=True)
        conf = directory / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {tokendir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        return conf

    @classmethod
    def provision(cls, directory: Path, label: str, pin: str, so_pin: str) -> TokenConfig:
        """Initialise token `label` under `directory` (idempotent: an existing one is kept)."""
        module = find_softhsm_module()
        if module is None or shutil.which("softhsm2-util") is None:
            raise TokenError(f"SoftHSM is not installed: {SOFTHSM_MISSING}")
        conf = cls.write_config(directory)
        env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
        slots = subprocess.run(
            ["softhsm2-util", "--show-slots"], env=env, capture_output=True, text=True, check=True
        ).stdout
        if not _has_label(slots, label):
            # PINs on the command line are visible to `ps`: acceptable for dev/test tokens only.
            result = subprocess.run(
                [
                    "softhsm2-util",
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--so-pin",
                    so_pin,
                    "--pin",
                    pin,
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise TokenError(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
        return TokenConfig(
            module_path=module,
            token_label=label,
            user_pin=SecretStr(pin),
            so_pin=SecretStr(so_pin),
            softhsm2_conf=conf,
        )


def _has_label(slots_output: str, label: str) -> bool:
    for line in slots_output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Label" and value.strip() == label:
            return True
    return False


# --- an open token ---------------------------------------------------------------------------

_softhsm_conf_in_use: str | None = None


def _load_module(config: TokenConfig) -> Any:
    global _softhsm_conf_in_use
    if config.softhsm2_conf is not None:
        wanted = str(config.softhsm2_conf)
        if _softhsm_conf_in_use is not None and _softhsm_conf_in_use != wanted:
            raise TokenError(
                f"SoftHSM is already initialised with {_softhsm_conf_in_use} in this process; "
                f"it cannot switch to {wanted}"
            )
        os.environ["SOFTHSM2_CONF"] = wanted
        _softhsm_conf_in_use = wanted
    if not config.module_path.exists():
        raise TokenError(f"PKCS#11 module not found: {config.module_path}")
    return pkcs11.lib(str(config.module_path))


class Token:
    """A logged-in read-write session on a token. Use `Token.open(config)` as a context.

    The session serialises operations itself (python-pkcs11 keeps a lock per session), so
    several signers may share one `Token`; open more tokens for parallel signing.
    """

    def __init__(self, session: Any, config: TokenConfig) -> None:
        self._session = session
        self.config = config

    @classmethod
    @contextmanager
    def open(cls, config: TokenConfig) -> Iterator[Token]:
        token = cls.connect(config)
        try:
            yield token
        finally:
            token.close()

    @classmethod
    def connect(cls, config: TokenConfig) -> Token:
        """Open a session for a long-lived owner (a service); call `close()` at shutdown."""
        lib = _load_module(config)
        try:
            tok = lib.get_token(token_label=config.token_label)
            session = tok.open(rw=True, user_pin=config.user_pin.get_secret_value())
        except pkcs11.exceptions.NoSuchToken:
            raise TokenError(f"no token labelled {config.token_label!r}") from None
        except pkcs11.exceptions.PinIncorrect:
            raise TokenError(f"wrong PIN for token {config.token_label!r}") from None
        except pkcs11.exceptions.PKCS11Error as e:
            raise TokenError(f"cannot open token {config.token_label!r}: {e!r}") from None
        return cls(session, config)

    @property
    def session(self) -> Any:
        """The underlying python-pkcs11 session (for callers with needs beyond this class)."""
        return self._session

    def close(self) -> None:
        self._session.close()

    def _objects(self, label: str, cls: ObjectClass) -> list[Any]:
        return list(self._session.get_objects({Attribute.LABEL: label, Attribute.CLASS: cls}))

    def has_key(self, label: str) -> bool:
        return bool(self._objects(label, ObjectClass.PRIVATE_KEY))

    def generate_key(self, label: str) -> bytes:
        """Generate an EC P-256 key pair in the token; return its SubjectPublicKeyInfo (DER)."""
        if self.has_key(label):
            raise TokenError(f"a key labelled {label!r} already exists")
        params = self._session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(P256_OID)},
            local=True,
        )
        public, _private = params.generate_keypair(
            store=True,
            label=label,
            id=key_id(label),
            public_template={Attribute.TOKEN: True, Attribute.VERIFY: True},
            private_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
            },
        )
        return bytes(encode_ec_public_key(public))

    def ensure_key(self, label: str) -> bytes:
        """The key labelled `label`, generated on first use; returns its public key (DER)."""
        if self.has_key(label):
            return self.public_key(label)
        return self.generate_key(label)

    def public_key(self, label: str) -> bytes:
        """SubjectPublicKeyInfo (DER) of the key labelled `label`."""
        found = self._objects(label, ObjectClass.PUBLIC_KEY)
        if len(found) != 1:
            raise TokenError(f"expected one public key labelled {label!r}, found {len(found)}")
        return bytes(encode_ec_public_key(found[0]))

    def private_key_attributes(self, label: str) -> dict[str, bool]:
        """SENSITIVE / EXTRACTABLE flags of a private key (what tests and audits check)."""
        found = self._objects(label, ObjectClass.PRIVATE_KEY)
        if len(found) != 1:
            raise TokenError(f"expected one private key labelled {label!r}, found {len(found)}")
        key = found[0]
        return {
            "sensitive": bool(key[Attribute.SENSITIVE]),
            "extractable": bool(key[Attribute.EXTRACTABLE]),
        }

    def signer(
        self,
        key_label: str,
        certificate: x509.Certificate,
        ca_chain: list[x509.Certificate] | None = None,
    ) -> PKCS11Signer:
        """A pyHanko signer: the token signs with `key_label`, `certificate` names the signer."""
        if not self.has_key(key_label):
            raise TokenError(f"no private key labelled {key_label!r} in the token")
        return PKCS11Signer(
            self._session,
            key_label=key_label,
            signing_cert=to_asn1(certificate),
            ca_chain=[to_asn1(c) for c in (ca_chain or [])],
            # SoftHSM (and many HSMs) have no hash-then-sign ECDSA: pyHanko hashes, token signs.
            use_raw_mechanism=True,
        )
