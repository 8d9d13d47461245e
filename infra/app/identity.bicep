// The function app's user-assigned identity: created first so that storage and Key Vault role
// assignments exist before the app starts (a system-assigned identity would only exist after).
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
