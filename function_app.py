"""Composition root of the bulk export app: builds the Durable Functions app and registers blueprints.

Nothing else belongs here: triggers live in `http_api/`, `orchestrators/` and `activities/`
(one Blueprint per module), domain logic in `shared/`. Settings are read where they are used,
at call time, never at import.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from activities import batch as batch_activities
from activities import export as export_activities
from activities import session as session_activities
from control import notifier, reconciler, session_intake
from http_api import (
    batches,
    exports,
    fhir,
    health,
    jobs,
    metrics,
    notifications,
    openapi,
    sessions,
    smart,
    sources,
    web,
)
from orchestrators import batch as batch_orchestrators
from orchestrators import export as export_orchestrators
from orchestrators import session as session_orchestrators
from shared import log_redaction

# FUNCTION: every HTTP trigger needs a key unless it opts out: /api/health, and the FHIR front
# door (http_api/fhir.py, http_api/smart.py), which checks bearer tokens and its own keys itself.
app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
metrics.configure_telemetry()  # traces and logs to Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set
log_redaction.install()  # URLs in the log without their query values (tokens in next links, SAS)
app.register_functions(health.bp)
app.register_functions(exports.bp)
app.register_functions(jobs.bp)
app.register_functions(batches.bp)
app.register_functions(fhir.bp)
app.register_functions(smart.bp)
app.register_functions(export_orchestrators.bp)
app.register_functions(export_activities.bp)
app.register_functions(batch_orchestrators.bp)
app.register_functions(batch_activities.bp)
app.register_functions(reconciler.bp)
app.register_functions(notifier.bp)
app.register_functions(notifications.bp)
app.register_functions(sessions.bp)
app.register_functions(session_orchestrators.bp)
app.register_functions(session_activities.bp)
app.register_functions(session_intake.bp)
app.register_functions(metrics.bp)
app.register_functions(web.bp)
app.register_functions(sources.bp)
app.register_functions(openapi.bp)
