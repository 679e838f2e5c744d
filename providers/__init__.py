"""Pulumi resources backed by the keyvault-acme engine."""
from .certificate import Certificate, CertificateProvider

__all__ = ["Certificate", "CertificateProvider"]
