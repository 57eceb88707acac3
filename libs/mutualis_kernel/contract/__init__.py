"""The published event contract: its AsyncAPI document and its compatibility guard.

Builds `docs/asyncapi.yaml` from the event catalog and the service manifests, snapshots the
payload schemas into `docs/event-schemas.json`, and refuses a change to a published event type
that its readers would reject unless the type gets a new version. Tooling only: services never
import it at run time, and it performs no I/O beyond reading and writing those files.
"""

from mutualis_kernel.contract.asyncapi import (
    ENVELOPE_HEADERS,
    build_asyncapi,
    consumers_of,
    render_yaml,
    subject_pattern,
)
from mutualis_kernel.contract.compatibility import breaking_changes, snapshot
from mutualis_kernel.contract.documents import (
    WRITE_COMMAND,
    BreakingChanges,
    Contract,
    ContractError,
    check_contract,
    render_asyncapi,
    write_contract,
)
from mutualis_kernel.contract.wildcards import subject_matches, subjects_overlap

__all__ = [
    "ENVELOPE_HEADERS",
    "WRITE_COMMAND",
    "BreakingChanges",
    "Contract",
    "ContractError",
    "breaking_changes",
    "build_asyncapi",
    "check_contract",
    "consumers_of",
    "render_asyncapi",
    "render_yaml",
    "snapshot",
    "subject_matches",
    "subject_pattern",
    "subjects_overlap",
    "write_contract",
]
