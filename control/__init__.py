"""Job control through the durable client: start, cancel, reconcile (used by every entry point)."""
