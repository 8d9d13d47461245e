// Bulk export service on Azure: a Flex Consumption (Linux, Python 3.11) function app with a
// user-assigned identity, its storage account (identity-based AzureWebJobsStorage; the exports
// and generated-data containers, the session-completed queue; an Event Grid system topic for the
// blob trigger), a Key Vault in RBAC mode and Application Insights on Log Analytics.
// Shaped for `azd up` (azure.yaml at the repository root); nothing here holds a secret.
// Every app setting is described in docs/settings.md (python -m scripts.settings_reference --write).
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

// -- storage names --------------------------------------------------------------------------
@description('Container that exports without a destination secret write to (EXPORT_DEFAULT_CONTAINER).')
param exportsContainerName string = 'exports'

@description('Container the acquisition apps write generated data to, as {app}/{session}/{name} (GENERATED_DATA_CONTAINER); its blob trigger is fed by Event Grid.')
param generatedDataContainerName string = 'generated-data'

@description('Queue that announces completed sessions (auto-export with timing session_end); the name the queue trigger in control/session_intake.py watches.')
param sessionCompletedQueueName string = 'session-completed'


// -- mail (docs/settings.md, "Outcome mail") ------------------------------------------------
@description('SMTP relay for outcome mail; empty disables mail.')
param smtpHost string = ''

@description('SMTP port of the relay.')
param smtpPort string = '587'

@description('none, starttls or tls; empty: derived from the port (465 tls, else starttls).')
param smtpSecurity string = ''

@description('SMTP user name; its password is the Key Vault secret named by smtpPasswordSecret.')
param smtpUsername string = ''

@description('NAME of the Key Vault secret holding the SMTP password (never the password).')
param smtpPasswordSecret string = ''

@description('Sender address of outcome mail (required when smtpHost is set).')
param mailFrom string = ''

@description('Administrator address that receives failure alerts.')
param adminEmail string = ''

@description('More alert recipients, comma-separated.')
param mailAdmins string = ''

@description('Job kinds whose successes are mailed (comma list, or none); empty: fhir-export,batch.')
param mailOnSuccess string = ''

@description('NCRONTAB (6 fields) of the outcome-mail timer; every minute by default (each run wakes an instance).')
param mailNotifierSchedule string = '0 * * * * *'

// -- jobs, FHIR and security ------------------------------------------------------------------
@description('Default FHIR source of the Bulk Data front door; empty: front-door exports are refused.')
param exportDefaultFhirBaseUrl string = ''

@description('Where jobs may call out (comma list of [scheme://]host[:port]); empty: any public host.')
param outboundAllow string = ''

// JSON settings travel base64-encoded: azd substitutes azd env values into main.parameters.json
// as text, where the quotes of a JSON value would break the file.
@description('SMART Backend Services clients (a JSON list of public keys, not secret), base64-encoded; empty: none.')
param smartClientsBase64 string = ''

@description('Base URL of status links in mail; empty: the https URL of the function app.')
param publicBaseUrl string = ''

@description('Auto-export rules (a JSON object, docs/settings.md AUTO_EXPORT_CONFIG), base64-encoded; empty: auto-export off.')
param autoExportConfigBase64 string = ''

// The blob-triggered function on the generated-data container (source EventGrid), which the
// postdeploy hook subscribes to the container's BlobCreated events ('' if there is none).
// A code fact, not an operator's choice: tests/deploy/test_infra.py checks it against function_app.
var generatedDataFunctionName = 'generated_data'
var tags = { 'azd-env-name': environmentName }
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

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
    appPrincipalId: identity.outputs.principalId
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
    containerNames: [exportsContainerName, generatedDataContainerName]
    queueNames: [sessionCompletedQueueName]
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    name: 'evgt-${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
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
    publicBaseUrl: publicBaseUrl
    appSettings: {
      KEY_VAULT_URL: keyVault.outputs.uri
      EXPORT_DEFAULT_CONTAINER: exportsContainerName
      EXPORT_DEFAULT_FHIR_BASE_URL: exportDefaultFhirBaseUrl
      GENERATED_DATA_CONTAINER: generatedDataContainerName
      AUTO_EXPORT_CONFIG: empty(autoExportConfigBase64) ? '' : base64ToString(autoExportConfigBase64)
      OUTBOUND_ALLOW: outboundAllow
      SMART_CLIENTS: empty(smartClientsBase64) ? '' : base64ToString(smartClientsBase64)
      SMTP_HOST: smtpHost
      SMTP_PORT: smtpPort
      SMTP_SECURITY: smtpSecurity
      SMTP_USERNAME: smtpUsername
      SMTP_PASSWORD_SECRET: smtpPasswordSecret
      MAIL_FROM: mailFrom
      ADMIN_EMAIL: adminEmail
      MAIL_ADMINS: mailAdmins
      MAIL_ON_SUCCESS: mailOnSuccess
      MAIL_NOTIFIER_SCHEDULE: mailNotifierSchedule
    }
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
// Read by infra/hooks/postdeploy.sh to subscribe the blob trigger to the container's events.
output EVENTGRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output GENERATED_DATA_CONTAINER_NAME string = generatedDataContainerName
output GENERATED_DATA_FUNCTION_NAME string = generatedDataFunctionName
