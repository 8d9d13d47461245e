"""Destinations: one Protocol (`base.Destination`), one module per implementation, a factory.

`base` is free of SDK imports, so orchestrators can compute block ids without loading
azure-storage-blob; import implementations from their modules.
"""
