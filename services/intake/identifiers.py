"""Normalising how customers are identified, so one person written three ways is found once."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from pydantic_core import PydanticCustomError

DEFAULT_REGION = "CN"
_ID_CARD = re.compile(r"^\d{17}[\dX]$")


class IdentifierKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    HANDLE = "handle"
    EXTERNAL_ID = "external_id"
    ID_CARD = "id_card"


# Identifiers that are personal data and therefore masked for callers without `pii:read`.
PERSONAL = frozenset({IdentifierKind.PHONE, IdentifierKind.EMAIL, IdentifierKind.ID_CARD})


def normalise_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """`13800138000`, `+86 138 0013 8000` and `138-0013-8000` all become `+8613800138000`."""
    return _e164(raw, region)


# Parsing a number costs more than the rest of a contact's validation, and the same customers call again
# and again. Only successes are kept (lru_cache does not store exceptions); the answer is a pure function
# of its arguments.
@lru_cache(maxsize=8192)
def _e164(raw: str, region: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise PydanticCustomError(
            "phone_invalid", "not a phone number: {reason}", {"reason": str(exc)}
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise PydanticCustomError(
            "phone_invalid", "not a valid phone number for region {region}", {"region": region}
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    # The local part is case-sensitive in theory, in no mail system customers use in practice.
    return raw.strip().lower()


def normalise_handle(raw: str) -> str:
    """Social handles compare without case or surrounding space: `Weibo:@LiNa ` is `weibo:@lina`."""
    handle = raw.strip().lower()
    if not handle:
        raise PydanticCustomError("handle_invalid", "a handle cannot be empty")
    return handle


def normalise_id_card(raw: str) -> str:
    """A mainland resident ID number: 18 characters, the last a digit or X."""
    value = raw.strip().upper()
    if not _ID_CARD.match(value):
        raise PydanticCustomError("id_card_invalid", "an ID number has 17 digits and a final digit or X")
    return value


NORMALISERS = {
    IdentifierKind.PHONE: normalise_phone,
    IdentifierKind.EMAIL: normalise_email,
    IdentifierKind.HANDLE: normalise_handle,
    IdentifierKind.EXTERNAL_ID: str.strip,
    IdentifierKind.ID_CARD: normalise_id_card,
}


def normalise(kind: IdentifierKind, raw: str) -> str:
    return NORMALISERS[kind](raw)
