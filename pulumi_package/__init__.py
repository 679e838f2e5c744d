"""What a Pulumi program imports to hold ACME certificates in Key Vault.

    from keyvault_acme_pulumi import CertificateWorkload, CertificateWorkloadArgs, Certificate

The modules live in the repository's top-level ``components/`` and ``providers/`` folders (this project's own
program, ``__main__.py`` and ``stacks/``, sits beside them) and are installed as
``keyvault_acme_pulumi.components`` and ``keyvault_acme_pulumi.providers`` (this file is in ``pulumi_package/``,
so no ``keyvault_acme_pulumi`` folder in the project directory shadows the installed package). A program with
folders of its own named ``components`` or ``providers`` imports both without a clash, and the dynamic provider Pulumi pickles
into state refers to ``keyvault_acme_pulumi.providers.certificate``, importable wherever the package is installed.

It needs the Pulumi SDK and pulumi-azure-native, which the base package (engine, CLI, stack model) leaves out:
they come with the ``pulumi`` extra, ``pip install 'keyvault-acme[pulumi]'``.
"""
try:
    import pulumi  # noqa: F401
    import pulumi_azure_native  # noqa: F401
except ModuleNotFoundError as missing:
    if missing.name not in ("pulumi", "pulumi_azure_native"):
        raise
    raise ImportError(f"keyvault_acme_pulumi needs {missing.name.replace('_', '-')}, which keyvault-acme installs only with "
                      f"its pulumi extra: pip install 'keyvault-acme[pulumi]'") from missing

from keyvault_acme_pulumi.components import (
    AlertsArgs,
    CertificateWorkload,
    CertificateWorkloadArgs,
    ConsumerArgs,
    IssuerArgs,
    WebhookArgs,
    role_plan,
)
from keyvault_acme_pulumi.providers import Certificate, CertificateProvider

__all__ = ["AlertsArgs", "Certificate", "CertificateProvider", "CertificateWorkload", "CertificateWorkloadArgs",
           "ConsumerArgs", "IssuerArgs", "WebhookArgs", "role_plan"]
