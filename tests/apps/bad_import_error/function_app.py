"""Indexing error case: the module fails while being imported."""

import azure.functions as func

app = func.FunctionApp()

raise RuntimeError("settings missing: DATABASE_URL")
