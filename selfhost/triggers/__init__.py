"""Non-HTTP, non-durable triggers (timer, queue, blob) and the queue/blob output bindings."""
