"""The durable engine: drives the unmodified azure-functions-durable SDK as the real host does.

Modules: `history` (event builders), `episode` (pure planning of one orchestrator episode),
`entities` (pure planning of entity operation batches), `store` (persistence Protocol),
`sqlite_store` / `memory_store`, `engine` (the runners), `http_activity` (`call_http`),
`sdk_speedups` (replay timestamp cache), `api` (the HTTP management API), `host` (what the rest
of the runtime uses).
"""
