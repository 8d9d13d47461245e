"""The web pages (issue 9): work list, job page, study/session overview, submit page, operator view.

    GET /api/ui                  the work list: every job, filters, refreshed every few seconds
    GET /api/ui/jobs/{id}        one job: each part's outcome and error, retry/cancel, its files
    GET /api/ui/sessions         a study's or a session's exports (?session=ID or ?study=ID)
    GET /api/ui/submit           pick files of a container prefix or the local root; one batch
    GET /api/ui/operator         failed jobs first, and the mail dead letter (admin key)
    GET /api/ui/static/{file}    the pages' CSS and JavaScript

Anonymous: the pages hold no data and no secret. They call the JSON API from the browser with the
key a person enters once per browser session (kept in sessionStorage, sent as x-functions-key),
so they can do exactly what that key can. Every asset is a file of `http_api/static/` (plain
HTML, CSS and JavaScript: no build step, nothing fetched from another machine; the Content
Security Policy says so to the browser too), read on first use and kept in memory.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from http_api.exports import error

bp = df.Blueprint()

STATIC: Final = Path(__file__).resolve().parent / "static"
# page name -> its title; the page's fragment is `static/<name>.html`, the shell `static/layout.html`.
PAGES: Final = {
    "work-list": "Work list",
    "job": "Job",
    "sessions": "Sessions and studies",
    "submit": "Submit files",
    "operator": "Operator",
}
_ASSET: Final = re.compile(r"^[a-z0-9][a-z0-9-]*\.(css|js|png|svg)$")
_TYPES: Final = {"css": "text/css", "js": "text/javascript", "png": "image/png", "svg": "image/svg+xml"}
_PREFIX: Final = re.compile(r"^(.*?)/ui(?:/|$)")
_HEADERS: Final = {
    # Only this origin's own scripts, styles and API: nothing inline, nothing from elsewhere.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated with the ETag: a new deployment shows at once
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: str


@functools.cache
def _file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


@functools.lru_cache(maxsize=64)
def _page(page: str, base: str) -> Asset:
    """The shell with the page's fragment, `{{base}}` (the path before `/ui`: the route prefix)
    filled in both, so links work at any depth and under any route prefix."""
    values = {"title": html.escape(PAGES[page]), "page": page, "base": html.escape(base)}
    main = _fill(_file(f"{page}.html").decode(), values)
    body = _fill(_file("layout.html").decode(), {**values, "main": main}).encode()
    return Asset(body, _etag(body))


@functools.cache
def _static(name: str) -> Asset | None:
    try:
        body = _file(name)
    except OSError:
        return None
    return Asset(body, _etag(body))


def _etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def _answer(req: func.HttpRequest, asset: Asset, mimetype: str) -> func.HttpResponse:
    headers = {**_HEADERS, "ETag": asset.etag}
    if req.headers.get("if-none-match") == asset.etag:
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(asset.body, status_code=200, mimetype=mimetype, charset="utf-8", headers=headers)


def _base(req: func.HttpRequest) -> str:
    match = _PREFIX.match(urlsplit(req.url).path)
    return match.group(1) if match else "/api"


def _serve_page(req: func.HttpRequest, page: str) -> func.HttpResponse:
    return _answer(req, _page(page, _base(req)), "text/html")


@bp.route(route="ui", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web_work_list(req: func.HttpRequest) -> func.HttpResponse:
    return _serve_page(req, "work-list")


@bp.route(route="ui/jobs/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web_job(req: func.HttpRequest) -> func.HttpResponse:
    return _serve_page(req, "job")  # the script reads the id from the address


@bp.route(route="ui/sessions", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web_sessions(req: func.HttpRequest) -> func.HttpResponse:
    return _serve_page(req, "sessions")


@bp.route(route="ui/submit", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web_submit(req: func.HttpRequest) -> func.HttpResponse:
    return _serve_page(req, "submit")


@bp.route(route="ui/operator", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web_operator(req: func.HttpRequest) -> func.HttpResponse:
    return _serve_page(req, "operator")


@bp.route(route="ui/static/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web_static(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("file", "")
    match = _ASSET.match(name)
    asset = _static(name) if match else None
    if match is None or asset is None:
        return error(404, "not_found", f"no asset {name!r}", "file")
    return _answer(req, asset, _TYPES[match.group(1)])
