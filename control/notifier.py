"""The notifier timer: on `MAIL_NOTIFIER_SCHEDULE` (`*/30 * * * * *`, every 30 seconds, in
local.settings.example.json and the test harness; an app setting in Azure), and once at start,
send the outcome mails that are due.

A run claims each due mail, sends it over SMTP and records the verdict (`shared.outcome_mail`);
while the mail server is down, mails wait their retry schedule (`MAIL_RETRY_SCHEDULE`) and none
is lost; after the last attempt a mail is dead and shows in GET /api/notifications?state=dead.
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from shared import outcome_mail
from shared.deps import get_deps

bp = df.Blueprint()
log = logging.getLogger(__name__)

SCHEDULE = "%MAIL_NOTIFIER_SCHEDULE%"  # an app setting, resolved by the host


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=True)
async def send_outcome_mail(timer: func.TimerRequest) -> None:
    counts = await asyncio.to_thread(outcome_mail.send_due, get_deps())
    if any(counts.values()):
        log.info("notifier: %s", counts)
