"""The HTTP side of the runtime: route templates (`routing`, pure), the route table in the host's
order (`routes`, pure), inline constraints (`constraints`, pure), request/response conversion
(`convert`, pure), authLevel checks (`auth`, pure) and the aiohttp server (`server`).

Import `selfhost.http.server` explicitly; this package does not import aiohttp on its own so
the pure modules stay cheap to import from the indexer and unit tests.
"""
