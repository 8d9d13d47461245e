// Bulk export service on Azure: a Flex Consumption (Linux, Python 3.11) function app with a
// user-assigned identity, its storage account (identity-based AzureWebJobsStorage, an `exports`
// container), a Key Vault in RBAC mode and Application Insights on Log Analytics.
// Shaped for `azd up` (azure.yaml at the repository root); nothing here holds a secret.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (one that offers the Flex Consumption plan).')
param location string

@description('Object id of the deploying user; gets blob and secret access for troubleshooting. Empty: none.')
param principalId string = ''

@description('SMTP relay for job notifications; empty disables mail.')
param smtpHost string = ''

@description('SMTP port of the relay.')
param smtpPort string = '587'

@description('Sender address of notifications (required when smtpHost is set).')
param mailFrom string = ''

@description('Administrator address that receives failure notifications.')
param adminEmail string = ''

var tags = { 'azd-env-name': environmentName }
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var exportsContainerName = 'exports'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-func-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
    exportsContainerName: exportsContainerName
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    appSettings: {
      KEY_VAULT_URL: keyVault.outputs.uri
      EXPORT_DEFAULT_CONTAINER: exportsContainerName
      SMTP_HOST: smtpHost
      SMTP_PORT: smtpPort
      MAIL_FROM: mailFrom
      ADMIN_EMAIL: adminEmail
    }
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
