"""Tests against a real Azurite (the session `azurite` fixture); they skip when it is not installed."""
