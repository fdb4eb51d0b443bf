"""Entity tags and their comparison (RFC 9110 section 13): strong for If-Match, weak for If-None-Match."""

from collections.abc import Iterator

import pytest
from hydra.crm.v1 import leads_pb2

from services.common.conditional import answer_version, etag, require_match
from services.common.errors import PreconditionFailed
from services.common.exchange import HTTP_STATUS_HEADER, Exchange, bind

LEAD = leads_pb2.Lead(id="6c3e2f8e-0000-4000-8000-000000000001", name={"string_value": "Ada"})


_unbind: list = []


@pytest.fixture(autouse=True)
def _unbound() -> Iterator[None]:
    """Each test's exchange is gone after it, as after a served call."""
    yield
    while _unbind:
        _unbind.pop()()


def within(headers: dict[str, str], *, conditional: bool = True) -> Exchange:
    exchange = Exchange(headers, conditional=conditional)
    _unbind.append(bind(exchange))
    return exchange


def test_the_tag_is_strong_stable_and_changes_with_the_resource() -> None:
    tag = etag(LEAD)
    assert (
        tag.startswith('"')
        and tag.endswith('"')
        and tag == etag(leads_pb2.Lead.FromString(LEAD.SerializeToString()))
    )
    changed = leads_pb2.Lead()
    changed.CopyFrom(LEAD)
    changed.name.string_value = "Grace"
    assert etag(changed) != tag


@pytest.mark.parametrize(
    ("sent", "not_modified"),
    [("*", True), ("TAG", True), ("W/TAG", True), ('"x", TAG', True), ('"x"', False), ("", False)],
)
def test_a_read_is_304_when_if_none_match_names_the_version(sent: str, not_modified: bool) -> None:
    exchange = within({"if-none-match": sent.replace("TAG", etag(LEAD))})
    answer_version(LEAD, read=True)
    assert exchange.answer_headers["etag"] == etag(LEAD)
    assert (exchange.answer_headers.get(HTTP_STATUS_HEADER) == "304") is not_modified


def test_a_write_is_never_answered_304() -> None:
    exchange = within({"if-none-match": "*"})
    answer_version(LEAD, read=False)
    assert HTTP_STATUS_HEADER not in exchange.answer_headers and "etag" in exchange.answer_headers


@pytest.mark.parametrize(
    ("sent", "allowed"), [("*", True), ("TAG", True), ('"x", TAG', True), ("W/TAG", False), ('"x"', False)]
)
def test_a_write_needs_if_match_to_name_the_version_strongly(sent: str, allowed: bool) -> None:
    within({"if-match": sent.replace("TAG", etag(LEAD))})
    if allowed:
        require_match(lambda: LEAD)
    else:
        with pytest.raises(PreconditionFailed):
            require_match(lambda: LEAD)


def test_routes_not_declared_conditional_neither_tag_nor_check() -> None:
    exchange = within({"if-match": '"x"', "if-none-match": "*"}, conditional=False)
    answer_version(LEAD, read=True)
    require_match(lambda: LEAD)
    assert exchange.answer_headers == {}
