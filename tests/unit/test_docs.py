"""Published documents stay true to the code."""

from pathlib import Path

from services.cli import asyncapi_document

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == asyncapi_document(), "docs/asyncapi.yaml is stale: run `make asyncapi`"
