"""Normalising how customers are identified: phone numbers to E.164, e-mail addresses to lower case."""

from __future__ import annotations

import phonenumbers
from pydantic_core import PydanticCustomError

DEFAULT_REGION = "CN"


def normalise_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """`13800138000`, `+86 138 0013 8000` and `138-0013-8000` all become `+8613800138000`."""
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
