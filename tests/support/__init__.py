"""Helpers shared by every test tier: polling, free ports, and the local servers tests start."""
