"""keyvault-acme's lifecycle engine: ACME certificates whose keys are born in Azure Key Vault.

No Pulumi imports here: the provider, the component, the CLI and the demo all call this package.
"""
