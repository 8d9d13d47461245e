"""Route templates, constraints and the host's route order (selfhost.http.routing / routes)."""

from __future__ import annotations

from typing import Any

import pytest

from selfhost.functions import HTTP_TRIGGER, FunctionInfo
from selfhost.http.routes import RouteTable, build_route_table, full_template_text, http_route
from selfhost.http.routing import RouteTemplateError, parse_template, split_path

pytestmark = pytest.mark.unit


def match(template: str, path: str) -> dict[str, str] | None:
    return parse_template(template).match(split_path(path))


# --- templates --------------------------------------------------------------------------------


def test_literals_match_case_insensitively() -> None:
    assert match("api/Orders/list", "/API/orders/LIST") == {}
    assert match("api/orders", "/api/order") is None


def test_segment_count_must_agree() -> None:
    assert match("a/{b}", "/a") is None
    assert match("a/{b}", "/a/x/y") is None
    assert match("a/{b}", "/a/x") == {"b": "x"}


def test_trailing_slash_is_ignored_and_segments_are_decoded() -> None:
    assert match("items/{name}", "/items/caf%C3%A9/") == {"name": "café"}
    assert match("items/{name}", "/items/a%20b") == {"name": "a b"}


def test_encoded_slash_stays_inside_its_segment() -> None:
    assert split_path("/a/b%2Fc/d") == ["a", "b%2Fc", "d"]
    assert match("x/{id}", "/x/a%2fb") == {"id": "a%2fb"}


def test_int_constraint() -> None:
    assert match("items/{id:int}", "/items/42") == {"id": "42"}
    assert match("items/{id:int}", "/items/-7") == {"id": "-7"}
    assert match("items/{id:int}", "/items/abc") is None
    assert match("items/{id:int}", "/items/4.2") is None
    assert match("items/{id:int}", "/items/2147483648") is None  # int32 overflow
    assert match("items/{id:long}", "/items/2147483648") == {"id": "2147483648"}


@pytest.mark.parametrize("segment", ["1" * 5000, "0" * 5000 + "7", "%D9%A4%D9%A2", "%FF"])
def test_hostile_segments_never_raise(segment: str) -> None:
    # 5000 digits used to reach int() and raise ValueError (a 500); Arabic-Indic digits are not
    # digits to .NET's invariant culture; an undecodable byte decodes to U+FFFD.
    for template in ("items/{id:int}", "items/{id:long}", "items/{id:min(1)}", "items/{id:range(1,9)}"):
        values = match(template, f"/items/{segment}")
        assert values == ({"id": segment} if segment.endswith("7") else None), (template, segment)
    assert match("items/{id:double}", f"/items/{'1' * 5000}") is None  # inf is not a double
    assert match("items/{id}", "/items/%FF") == {"id": "\ufffd"}


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("{v:alpha}", "abcXYZ", "abc1"),
        ("{v:bool}", "True", "yes"),
        ("{v:guid}", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "3f2504e0-4f89"),
        ("{v:guid}", "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}", "not-a-guid"),
        ("{v:double}", "1.5e3", "1.5x"),
        ("{v:decimal}", "-0.25", "1e3"),
        ("{v:datetime}", "2025-01-31T10:00:00Z", "31/31/2025"),
        ("{v:minlength(3)}", "abc", "ab"),
        ("{v:maxlength(3)}", "abc", "abcd"),
        ("{v:length(2)}", "ab", "abc"),
        ("{v:length(2,4)}", "abcd", "abcde"),
        ("{v:min(10)}", "10", "9"),
        ("{v:max(10)}", "10", "11"),
        ("{v:range(1,5)}", "5", "6"),
        ("{v:regex(^ab+$)}", "ABBB", "abc"),
        ("{v:int:min(10)}", "12", "8"),
        ("{v:file}", "report.pdf", "report"),
        ("{v:nonfile}", "report", "report.pdf"),
    ],
)
def test_inline_constraints(template: str, good: str, bad: str) -> None:
    assert match(template, "/" + good) == {"v": good}
    assert match(template, "/" + bad) is None


def test_regex_constraint_may_contain_parentheses_and_escaped_braces() -> None:
    t = parse_template(r"codes/{code:regex(^(ab|cd)\d{{2}}$)}")
    assert t.match(["codes", "ab12"]) == {"code": "ab12"}
    assert t.match(["codes", "ab123"]) is None


def test_optional_parameter_is_left_out_when_absent() -> None:
    assert match("opt/{id?}", "/opt") == {}
    assert match("opt/{id?}", "/opt/3") == {"id": "3"}
    assert match("products/{category:alpha}/{id:int?}", "/products/books") == {"category": "books"}
    assert match("products/{category:alpha}/{id:int?}", "/products/books/x") is None


def test_default_value_is_used_when_absent() -> None:
    assert match("lang/{code=en}", "/lang") == {"code": "en"}
    assert match("lang/{code=en}", "/lang/fr") == {"code": "fr"}


def test_catch_all_takes_the_rest_and_may_be_empty() -> None:
    assert match("files/{*path}", "/files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert match("files/{*path}", "/files") == {}
    assert match("files/{**path}", "/files/x/y") == {"path": "x/y"}


def test_complex_segment_splits_like_aspnet() -> None:
    # Right-to-left: the last literal "." separates name and extension.
    assert match("dl/{name}.{ext}", "/dl/archive.tar.gz") == {"name": "archive.tar", "ext": "gz"}
    assert match("dl/{name}.{ext}", "/dl/noextension") is None
    assert match("v{major:int}/ping", "/V2/ping") == {"major": "2"}


def test_doubled_braces_are_literal() -> None:
    assert match("raw/{{x}}", "/raw/{x}") == {}


@pytest.mark.parametrize(
    "template",
    [
        "a/{b",  # unclosed
        "a/b}",  # unmatched
        "a//b",  # empty segment
        "a/{b:nosuch}",  # unknown constraint
        "a/{b:length(x)}",  # bad argument
        "{*rest}/tail",  # catch-all not last
        "{*rest?}",  # optional catch-all
        "{a}/{A}",  # duplicate name (case-insensitive)
        "{a}{b}",  # consecutive parameters
        "x/{}",  # no name
        "{name}.{ext?}",  # optional inside a complex segment (not supported)
    ],
)
def test_bad_templates_are_rejected(template: str) -> None:
    with pytest.raises(RouteTemplateError, match="invalid route template"):
        parse_template(template)


# --- route table --------------------------------------------------------------------------------


def http_fn(name: str, route: str, methods: list[str] | None = None, auth: str = "FUNCTION") -> FunctionInfo:
    trigger: dict[str, Any] = {
        "direction": "IN",
        "type": HTTP_TRIGGER,
        "name": "req",
        "route": route,
        "authLevel": auth,
    }
    if methods is not None:
        trigger["methods"] = methods
    return FunctionInfo(
        name=name,
        trigger_type=HTTP_TRIGGER,
        trigger=trigger,
        bindings=(trigger, {"direction": "OUT", "type": "http", "name": "$return"}),
        user_function=lambda req: None,
        is_async=False,
    )


def resolve(table: RouteTable, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    found = table.match(method, split_path(path))
    return None if found is None else (found[0].function.name, found[1])


def test_first_function_by_name_wins_not_the_most_specific_route() -> None:
    # Host quirk (azure-functions-host#9876): "a_item" sorts before "b_recent" and shadows it.
    table = build_route_table([http_fn("b_recent", "items/recent"), http_fn("a_item", "items/{id}")], "api")
    assert resolve(table, "GET", "/api/items/recent") == ("a_item", {"id": "recent"})


def test_name_order_is_case_insensitive() -> None:
    table = build_route_table([http_fn("Zeta", "x/{a}"), http_fn("alpha", "x/{b}")], "api")
    assert resolve(table, "GET", "/api/x/1") == ("alpha", {"b": "1"})


def test_a_failed_constraint_falls_through_to_the_next_function() -> None:
    table = build_route_table([http_fn("by_id", "items/{id:int}"), http_fn("by_name", "items/{name}")], "api")
    assert resolve(table, "GET", "/api/items/5") == ("by_id", {"id": "5"})
    assert resolve(table, "GET", "/api/items/abc") == ("by_name", {"name": "abc"})


def test_method_is_a_route_constraint() -> None:
    table = build_route_table(
        [http_fn("a_get", "things", ["GET"]), http_fn("b_post", "things", ["POST"])], "api"
    )
    assert resolve(table, "post", "/api/things") == ("b_post", {})
    assert resolve(table, "DELETE", "/api/things") is None  # wrong method: no route (404)
    assert resolve(table, "GET", "/api/nothing-here") is None


def test_no_methods_means_every_method() -> None:
    table = build_route_table([http_fn("any", "x")], "api")
    assert all(resolve(table, m, "/api/x") == ("any", {}) for m in ("GET", "PATCH", "OPTIONS"))


@pytest.mark.parametrize(
    ("prefix", "path", "found"),
    [
        ("api", "/api/hello", True),
        ("api", "/hello", False),
        ("", "/hello", True),
        ("v1/fn", "/V1/FN/hello", True),
    ],
)
def test_route_prefix(prefix: str, path: str, found: bool) -> None:
    table = build_route_table([http_fn("hello", "hello")], prefix)
    assert (resolve(table, "GET", path) is not None) is found


def test_http_route_reads_the_binding() -> None:
    route = http_route(http_fn("f", "/x/{id}/", ["get", "POST"], auth="ANONYMOUS"), "api")
    assert route.template.text == "api/x/{id}"
    assert route.methods == frozenset({"GET", "POST"})
    assert route.auth_level == "anonymous"
    assert full_template_text("", "/x/") == "x"
