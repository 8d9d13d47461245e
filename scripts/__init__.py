"""Developer scripts run by the Makefile (not part of the deployed app)."""
