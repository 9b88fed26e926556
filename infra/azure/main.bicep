// batch-endpoints on Azure Functions (Flex Consumption, Node.js 22) with Durable Functions on the
// Azure Storage backend. Scales out with load and to zero when idle.
//
//   az group create -n batch-endpoints -l westeurope
//   az deployment group create -g batch-endpoints -f infra/azure/main.bicep -p appName=<unique-name>
//   npm ci && npm run build && npm prune --omit=dev   (then zip and deploy, see README.md)

@description('Globally unique base name for the function app and its resources.')
@minLength(3)
@maxLength(20)
param appName string

param location string = resourceGroup().location

@description('Maximum instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB (2048 or 4096); scoring with onnxruntime benefits from 4096.')
@allowed([2048, 4096])
param instanceMemoryMB int = 4096

@description('Blob container of the built-in workspaceblobstore datastore.')
param workspaceContainer string = 'azureml-blobstore'

@description('function_key: API calls need a function key; entra: the app validates Microsoft Entra ID bearer tokens (set authTenants, authAudiences); easy_auth: App Service authentication is in front (configure it separately); see README.')
@allowed(['function_key', 'entra', 'easy_auth'])
param authMode string = 'function_key'

@description('Tenant ids whose tokens are accepted, comma-separated (entra; optional with easy_auth).')
param authTenants string = ''

@description('The app registration\'s application ID URI and/or client id, comma-separated (entra).')
param authAudiences string = ''

@description('Blob path prefix (in the workspace container) whose new blobs are sent to the app as BlobCreated events; empty: every blob of the container.')
param blobEventsPrefix string = ''

@description('Create the Event Grid subscription to the blobCreated function. Event Grid checks that the function exists, so deploy the app code first, then deploy again with true.')
param subscribeBlobCreated bool = false

var storageName = toLower(take(replace('${appName}st${uniqueString(resourceGroup().id)}', '-', ''), 24))
var deploymentContainer = 'app-package'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource workspace 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: workspaceContainer
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${appName}-logs'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${appName}-insights'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${appName}-plan'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

var storageConnection = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'node', version: '22' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'AzureWebJobsStorage', value: storageConnection }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'BATCH_WORKSPACE_CONTAINER', value: workspaceContainer }
        { name: 'BATCH_AUTH_MODE', value: authMode }
        { name: 'BATCH_AUTH_TENANTS', value: authTenants }
        { name: 'BATCH_AUTH_AUDIENCES', value: authAudiences }
        { name: 'BATCH_EVENTS_TOPIC_ENDPOINT', value: jobEvents.properties.endpoint }
        { name: 'BATCH_EVENTS_TOPIC_KEY', value: jobEvents.listKeys().key1 }
      ]
    }
  }
}

// The app reads its deployment package with its identity.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, app.id, 'blob-data-owner')
  scope: storage
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  }
}

// Blob-created events of the storage account (a system topic), to the app's blobCreated function.
// Only finished writes start work: data.api is PutBlob, PutBlockList, CopyBlob or FlushWithClose
// (an ADLS Gen2 CreateFile, which comes first with zero length, is left out here already).
resource storageEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: '${appName}-storage-events'
  location: location
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource blobCreatedSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeBlobCreated) {
  parent: storageEvents
  name: 'blob-created-to-app'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/blobCreated'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${workspaceContainer}/blobs/${blobEventsPrefix}'
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: ['PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose']
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

// Job events (CloudEvents 1.0, one per state change of a job): the app publishes them here.
resource jobEvents 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: '${appName}-job-events'
  location: location
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    publicNetworkAccess: 'Enabled'
  }
}

output functionAppName string = app.name
output connectorHost string = app.properties.defaultHostName
output jobEventsTopicEndpoint string = jobEvents.properties.endpoint
output storageEventsSystemTopic string = storageEvents.name
output apiBaseUrl string = 'https://${app.properties.defaultHostName}/api'
output storageAccountName string = storage.name
