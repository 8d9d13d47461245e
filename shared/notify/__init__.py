"""Outcome e-mail: the `MailSender` role (`base`), an SMTP sender, an in-memory twin, and the
pure functions that turn a job's status document into the submitter's report and the admins'
alert (`messages`).

Import the implementations from their modules. Nothing here reads settings, the job store or
the clock: callers pass what a message needs, so the outbox and the notifier can be tested
without a server.
"""
