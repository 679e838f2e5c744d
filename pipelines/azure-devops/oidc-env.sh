# Sourced inside AzureCLI@2 (addSpnToEnvironment: true): hand the service connection's federated
# id token to pulumi-azure-native. Nothing here is a stored secret; the token lives for this job only.
export ARM_USE_OIDC=true
export ARM_OIDC_TOKEN="$idToken"
export ARM_CLIENT_ID="$servicePrincipalId"
export ARM_TENANT_ID="$tenantId"
export ARM_SUBSCRIPTION_ID="$(az account show --query id -o tsv)"
