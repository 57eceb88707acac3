"""The tenant directory: the metropolis and its communes, read from one versioned file.

Every service asks this module whether a tenant exists; nothing else hard-codes a commune.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class Tenant(BaseModel):
    """One organisation that shares Mutualis: a commune or the metropolis itself."""

    model_config = ConfigDict(frozen=True)

    slug: str
    name: str
    kind: Literal["commune", "metropolis"]
    insee: str | None = Field(default=None, pattern=r"^\d[0-9AB]\d{3}$")
    siren: str | None = Field(default=None, pattern=r"^\d{9}$")

    @field_validator("slug")
    @classmethod
    def _slug_is_a_subject_token(cls, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            raise ValueError(f"tenant slug {value!r} must be lowercase letters, digits, hyphens")
        return value


class TenantDirectory(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int
    tenants: tuple[Tenant, ...]

    @field_validator("tenants")
    @classmethod
    def _slugs_are_unique(cls, value: tuple[Tenant, ...]) -> tuple[Tenant, ...]:
        slugs = [t.slug for t in value]
        if len(slugs) != len(set(slugs)):
            raise ValueError("tenant slugs must be unique")
        return value

    def get(self, slug: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.slug == slug:
                return tenant
        raise UnknownTenant(slug)

    def __contains__(self, slug: object) -> bool:
        return any(t.slug == slug for t in self.tenants)

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(t.slug for t in self.tenants)

    @property
    def metropolis(self) -> Tenant:
        return next(t for t in self.tenants if t.kind == "metropolis")


class UnknownTenant(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"unknown tenant {slug!r}")
        self.slug = slug


def load_tenants(path: Path | None = None) -> TenantDirectory:
    """Read a tenant file; without a path, the one shipped with the kernel."""
    if path is None:
        text = resources.files("mutualis_kernel").joinpath("tenants.yaml").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return TenantDirectory.model_validate(yaml.safe_load(text))


#: Deployments point this at the tenants file rendered from their Helm values.
TENANTS_FILE_VARIABLE = "MUTUALIS_TENANTS_FILE"


@lru_cache(maxsize=1)
def default_tenants() -> TenantDirectory:
    """The deployment's tenants: `$MUTUALIS_TENANTS_FILE` if set, else the shipped file."""
    configured = os.environ.get(TENANTS_FILE_VARIABLE)
    return load_tenants(Path(configured) if configured else None)
