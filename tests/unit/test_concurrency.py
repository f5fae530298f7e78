"""ETags and If-Match: a stale write is 412, not a lost update."""

import pytest

from shared.concurrency import check_if_match, etag
from shared.errors import Problem


def test_current_or_wildcard_or_absent_passes() -> None:
    check_if_match(None, 3)
    check_if_match('W/"3"', 3)
    check_if_match('"3"', 3)
    check_if_match('W/"1", W/"3"', 3)
    check_if_match("*", 3)


def test_stale_version_is_412_with_the_current_etag() -> None:
    with pytest.raises(Problem) as stale:
        check_if_match(etag(2), 3)
    assert stale.value.status == 412
    assert stale.value.headers["ETag"] == 'W/"3"'
