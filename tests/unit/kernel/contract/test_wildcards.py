"""NATS subject wildcards, as the contract tooling reads consumer filters."""

import pytest

from mutualis_kernel.contract import subject_matches, subjects_overlap

SUBJECT = "evt.parapheur.bordeaux.folder.f1.step.assigned"


@pytest.mark.parametrize(
    "filter_subject",
    [
        "evt.parapheur.>",  # by service
        "evt.*.bordeaux.>",  # by tenant
        "evt.*.*.*.*.step.assigned",  # by event
        "evt.parapheur.bordeaux.folder.f1.>",  # by aggregate
        ">",
        SUBJECT,
    ],
)
def test_a_filter_receives_the_subjects_it_describes(filter_subject: str) -> None:
    assert subject_matches(filter_subject, SUBJECT)


@pytest.mark.parametrize(
    "filter_subject",
    [
        "evt.identity.>",
        "evt.*.pessac.>",
        "evt.*.*.*.*.step.completed",
        "evt.parapheur.bordeaux.folder.f2.>",
        "evt.parapheur.*",  # `*` is exactly one token
        f"{SUBJECT}.more",  # longer than the subject
        "evt.parapheur.bordeaux.folder.f1.step.assigned.>",  # `>` needs one more token
    ],
)
def test_a_filter_ignores_other_subjects(filter_subject: str) -> None:
    assert not subject_matches(filter_subject, SUBJECT)


def test_a_concrete_subject_is_not_a_pattern() -> None:
    # In a concrete subject `*` is an ordinary token, not a wildcard.
    assert not subject_matches("evt.parapheur.bordeaux", "evt.*.bordeaux")


CHANNEL = "evt.parapheur.*.folder.*.step.assigned"


@pytest.mark.parametrize(
    "filter_subject",
    ["evt.parapheur.>", "evt.*.bordeaux.>", "evt.*.*.*.*.step.assigned", "evt.>", CHANNEL],
)
def test_a_filter_overlaps_a_channel_when_some_event_fits_both(filter_subject: str) -> None:
    assert subjects_overlap(filter_subject, CHANNEL)
    assert subjects_overlap(CHANNEL, filter_subject)


@pytest.mark.parametrize(
    "filter_subject",
    [
        "evt.identity.>",
        "evt.*.*.*.*.step.completed",
        "evt.*.*.record.>",
        "dlq.notifications-steps",
        "evt.parapheur.*.folder.*.step",
    ],
)
def test_a_filter_misses_a_channel_when_no_event_fits_both(filter_subject: str) -> None:
    assert not subjects_overlap(filter_subject, CHANNEL)
    assert not subjects_overlap(CHANNEL, filter_subject)
