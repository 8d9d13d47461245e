"""The export domain, framework-free: contracts, settings, errors, sources, destinations, secrets,
notification. Never imports azure.functions or azure.durable_functions."""
