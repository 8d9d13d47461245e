"""`bulk-export`: the service's command line, speaking only its HTTP API with a function key.

It works alike against the local runtime (`make run`) and an Azure deployment. Modules by role:
`config` (where the service is and which key), `api` (the HTTP client; every failure is one
line), `bodies` (request bodies from a JSON file or flags), `render` (what a person reads),
`watch` (live progress until a job ends) and `main` (the commands). Exit codes: `codes`.

It must not import the app's packages (`shared`, `http_api`, ...) except `validate`, which runs
the data validator of the checkout (`shared.validation`).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
