"""keyvault-acme platform policy pack: DNS-name allowlists per workload, and no broad role assignments.

The validation logic is in ``platform_rules`` (tested directly); this file only declares the pack.
"""
import platform_rules
from pulumi_policy import EnforcementLevel, PolicyConfigSchema, PolicyPack, ResourceValidationPolicy

PolicyPack(
    name="keyvault-acme-platform",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name="certificate-dns-names-allowed",
            description="A certificate may only name DNS names the platform team allows its workload.",
            validate=platform_rules.certificate_names_allowed,
            config_schema=PolicyConfigSchema(properties=platform_rules.ALLOWLIST_CONFIG_SCHEMA),
        ),
        ResourceValidationPolicy(
            name="no-broad-role-assignments",
            description="No Owner, Contributor or User Access Administrator, no subscription- or group-wide scope, and "
                        "no Key Vault secrets role on a whole vault (it holds the ACME account key).",
            validate=platform_rules.role_assignments_narrow,
        ),
    ],
)
