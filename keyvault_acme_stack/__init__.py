"""The stack-file model: a workload's ``keyvault-acme:*`` config (vault, zones, identities, monitoring,
alerts, allowlist, certificates) typed and validated, for the Pulumi program, the component and the CLI.

Outside the engine: the engine knows one certificate from a ``CertificateSpec``; this package knows the
workload around it. No Pulumi imports: the component hands in ``pulumi.Config`` values as a plain mapping.
"""
