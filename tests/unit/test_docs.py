"""Published documents stay true to the code."""

from pathlib import Path

import pytest

from services.cli import asyncapi_document, openapi_documents

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == asyncapi_document(), "docs/asyncapi.yaml is stale: run `make asyncapi`"


@pytest.mark.parametrize(("service", "document"), sorted(openapi_documents().items()))
def test_openapi_documents_are_up_to_date(service: str, document: str) -> None:
    committed = (ROOT / "docs" / "openapi" / f"{service}.json").read_text()
    assert committed == document, f"docs/openapi/{service}.json is stale: run `make openapi`"
