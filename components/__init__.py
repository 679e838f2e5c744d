"""Pulumi component resources: what the program builds, from the engine's providers."""
from .args import AlertsArgs, CertificateWorkloadArgs, ConsumerArgs, IssuerArgs, WebhookArgs
from .workload import CertificateWorkload, role_plan

__all__ = ["AlertsArgs", "CertificateWorkload", "CertificateWorkloadArgs", "ConsumerArgs", "IssuerArgs",
           "WebhookArgs", "role_plan"]
