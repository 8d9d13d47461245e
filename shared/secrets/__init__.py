"""Secret stores: one Protocol (`base.SecretStore`), Key Vault and local-folder implementations, a factory.

Import the implementations from their modules; this package stays free of SDK imports so that
contracts can use the name rules in `base` without loading azure-keyvault.
"""
