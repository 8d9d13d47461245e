"""The durable engine: drives the unmodified azure-functions-durable SDK as the real host does.

Modules: `history` (event builders), `episode` (pure planning of one orchestrator episode),
`store` (persistence Protocol), `sqlite_store` / `memory_store`, `engine` (the runners),
`api` (the HTTP management API), `host` (what the rest of the runtime uses).
"""
