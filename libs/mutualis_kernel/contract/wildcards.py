"""NATS subject wildcard matching, as the server does it: `*` is one token, `>` the rest.

The contract tooling uses it to decide which consumer receives which event type without a
running server; it must agree with nats-server's own rules, so it stays this small.
"""

from __future__ import annotations

SINGLE = "*"
REST = ">"


def subject_matches(filter_subject: str, subject: str) -> bool:
    """Whether a concrete `subject` is delivered to a consumer filtering on `filter_subject`."""
    return _match(filter_subject.split("."), subject.split("."), concrete=True)


def subjects_overlap(first: str, second: str) -> bool:
    """Whether some concrete subject matches both patterns (either may hold wildcards).

    `evt.*.bordeaux.>` and `evt.parapheur.*.folder.*.folder.submitted` overlap: a consumer
    with the first filter receives some of the events the second pattern describes.
    """
    return _match(first.split("."), second.split("."), concrete=False)


def _match(left: list[str], right: list[str], *, concrete: bool) -> bool:
    for index, token in enumerate(left):
        if index >= len(right):
            return False  # `a.b` never matches `a.b.c`, nor does `a.>` match `a`
        other = right[index]
        if token == REST:
            return True  # `>` needs at least one token, and there is one
        if not concrete and other == REST:
            return True
        if token == SINGLE or (not concrete and other == SINGLE):
            continue
        if token != other:
            return False
    return len(left) == len(right)
