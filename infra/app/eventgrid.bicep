// The Event Grid system topic of the app's storage account. Flex Consumption runs blob triggers
// only with `source=EventGrid` (it rejects the polling scan), and Event Grid delivers a
// BlobCreated event within seconds, where polling can lag up to 10 minutes on an idle app. The
// subscription that feeds the trigger needs the host's `blobs_extension` key, which exists only
// once the code is deployed, so infra/hooks/postdeploy.sh creates it (azd postdeploy hook).
param name string
param location string
param tags object = {}
@description('Resource id of the storage account whose blob events are published.')
param storageAccountId string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
