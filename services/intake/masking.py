"""Masking personal data for callers without `pii:read` (DOMAIN rule 12: confidentiality)."""

from __future__ import annotations

import phonenumbers

from services.intake.identifiers import IdentifierKind


def mask_phone(e164: str) -> str:
    """`+8613800138000` → `138****8000`: enough to recognise, not enough to call."""
    try:
        digits = str(phonenumbers.parse(e164).national_number)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in e164 if ch.isdigit())
    if len(digits) <= 6:
        return "*" * max(len(digits) - 2, 0) + digits[-2:]
    return f"{digits[:3]}****{digits[-4:]}"


def mask_email(email: str) -> str:
    """`zhangwei@qq.com` → `z***@qq.com`."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_id_card(value: str) -> str:
    return f"{value[:4]}{'*' * (len(value) - 8)}{value[-4:]}" if len(value) > 8 else "*" * len(value)


def mask_address(text: str) -> str:
    """Keep the region (roughly the first six characters), hide the street and number."""
    return f"{text[:6]}****" if len(text) > 6 else "****"


MASKERS = {
    IdentifierKind.PHONE: mask_phone,
    IdentifierKind.EMAIL: mask_email,
    IdentifierKind.ID_CARD: mask_id_card,
}


def mask_identifier(kind: str, value: str) -> str:
    masker = MASKERS.get(IdentifierKind(kind))
    return masker(value) if masker else value
