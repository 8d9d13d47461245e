"""Orchestrator blueprints: deterministic workflows, one module per job kind."""
