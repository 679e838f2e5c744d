"""Pulumi component resources: what the program builds, from the engine's providers."""
from .workload import CertificateWorkload, role_plan

__all__ = ["CertificateWorkload", "role_plan"]
