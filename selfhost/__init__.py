"""Self-hosted Azure Functions + Durable Functions runtime.

Runs an unchanged Python v2 `function_app.py` on one machine: HTTP triggers with keys, the
durable engine on SQLite, timer, queue and blob triggers on Azurite. The app never imports this
package, and this package never imports app code by name.
"""
