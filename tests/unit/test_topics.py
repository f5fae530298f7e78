"""AMQP topic routing: `*` is exactly one word, `#` is zero or more."""

from hypothesis import given
from hypothesis import strategies as st

from shared.bus.topics import topic_matches

word = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
keys = st.lists(word, min_size=1, max_size=6).map(".".join)


def test_exact_key_matches_only_itself() -> None:
    assert topic_matches("intake.contact.received.v1", "intake.contact.received.v1")
    assert not topic_matches("intake.contact.received.v1", "intake.contact.received.v2")


def test_star_is_exactly_one_word() -> None:
    assert topic_matches("tickets.*.created.v1", "tickets.ticket.created.v1")
    assert not topic_matches("tickets.*.v1", "tickets.ticket.created.v1")
    assert not topic_matches("tickets.*", "tickets")


def test_hash_is_zero_or_more_words() -> None:
    assert topic_matches("tickets.#", "tickets.sla.breached.v1")
    assert topic_matches("tickets.#", "tickets")
    assert topic_matches("#.v1", "briefs.brief.approved.v1")
    assert topic_matches("tickets.#.v1", "tickets.v1")
    assert not topic_matches("tickets.#", "intake.contact.received.v1")


@given(keys)
def test_hash_alone_matches_everything(key: str) -> None:
    assert topic_matches("#", key)


@given(keys)
def test_one_star_per_word_matches_any_key_of_that_length(key: str) -> None:
    stars = ".".join("*" for _ in key.split("."))
    assert topic_matches(stars, key)
    assert not topic_matches(stars + ".*", key)
