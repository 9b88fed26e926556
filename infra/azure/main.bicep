// batch-endpoints on Azure Functions (Flex Consumption, Node.js 22) with Durable Functions on the
// Azure Storage backend, or on a Durable Task Scheduler (durableBackend). Scales out with load and to
// zero when idle.
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

@description('Durable Functions backend: azureStorage (queues and tables of the app storage account) or durableTaskScheduler (a Durable Task Scheduler and task hub, reached with the app identity; see README.md, "Durable backend").')
@allowed(['azureStorage', 'durableTaskScheduler'])
param durableBackend string = 'azureStorage'

@description('Durable Task Scheduler SKU (durableTaskScheduler only): Dedicated (capacity units of ~2,000 actions/s each) or Consumption (pay per action).')
@allowed(['Dedicated', 'Consumption'])
param schedulerSku string = 'Dedicated'

@description('Capacity units of a Dedicated scheduler.')
@minValue(1)
@maxValue(3)
param schedulerCapacity int = 1

@description('Blob container of the built-in workspaceblobstore datastore.')
param workspaceContainer string = 'azureml-blobstore'

@description('function_key: API calls need a function key; entra: the app validates Microsoft Entra ID bearer tokens (set authTenants, authAudiences); easy_auth: App Service authentication is in front (configure it separately); see README.')
@allowed(['function_key', 'entra', 'easy_auth'])
param authMode string = 'function_key'

@description('Tenant ids whose tokens are accepted, comma-separated (entra; optional with easy_auth).')
param authTenants string = ''

@description('The app registration\'s application ID URI and/or client id, comma-separated (entra).')
param authAudiences string = ''

@description('entra: client id of the app registration whose "single-page application" redirect URI is https://{appName}.azurewebsites.net/api/app/; the web page then offers "Sign in with Microsoft" (infra/azure/README.md). Empty: the page takes a pasted token.')
param webClientId string = ''

@description('Blob path prefix (in the workspace container) whose new blobs are sent to the app as BlobCreated events; empty: every blob of the container.')
param blobEventsPrefix string = ''

@description('Create the Event Grid subscription to the blobCreated function. Event Grid checks that the function exists, so deploy the app code first, then deploy again with true.')
param subscribeBlobCreated bool = false

// ---- Private networking (README.md, "Private networking") ----------------------------------------

@description('Put the storage account on a private network: a VNet with two subnets, VNet integration for the function app, private endpoints (with private DNS zones) for the account\'s blob, queue and table services, and public network access to the account disabled.')
param privateNetworking bool = false

@description('Address space of the VNet created when privateNetworking is true.')
param vnetAddressPrefix string = '10.20.0.0/16'

@description('Subnet the function app integrates with (delegated to Microsoft.App/environments, as Flex Consumption requires; /27 or larger).')
param appSubnetPrefix string = '10.20.1.0/24'

@description('Subnet holding the storage account\'s private endpoints.')
param privateEndpointSubnetPrefix string = '10.20.2.0/24'

// ---- App Service authentication (README.md, "Microsoft Entra ID: the app registration") -----------

@description('Put App Service authentication (Easy Auth) in front of the app: it validates Microsoft Entra ID tokens before any request reaches a function, and rejects the others with 401. Needs entraClientId. The app then runs with BATCH_AUTH_MODE=easy_auth whatever authMode says (its functions take no key: App Service authenticates).')
param appServiceAuthentication bool = false

@description('Tenant of the app registration (its directory id). Default: the tenant of this deployment.')
param entraTenantId string = tenant().tenantId

@description('Application (client) id of the app registration (README.md). Required with appServiceAuthentication.')
param entraClientId string = ''

@description('Application ID URI of the app registration, e.g. api://batch-endpoints. Default: api://{entraClientId}.')
param entraApplicationIdUri string = ''

// App Service authentication in front means the app reads its headers (and asks for no key).
var effectiveAuthMode = appServiceAuthentication ? 'easy_auth' : authMode
// With Easy Auth, the app checks the tenant again when told none: the app registration's.
var effectiveAuthTenants = appServiceAuthentication && empty(authTenants) ? entraTenantId : authTenants
// The tenants' OpenID metadata, in this cloud (public or sovereign).
var authMetadataUrl = '${environment().authentication.loginEndpoint}{tenant}/v2.0/.well-known/openid-configuration'

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
    // With private networking, the account is reached only through its private endpoints (the app
    // through its VNet integration); Azure services such as Event Grid's system topic still read
    // its events, which do not go through the network rules.
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
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
    // VNet integration: every outbound call of the app (storage included) goes through the VNet,
    // where the private DNS zones below resolve the account's names to its private endpoints.
    virtualNetworkSubnetId: privateNetworking ? appSubnet.id : null
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
      appSettings: concat([
        { name: 'AzureWebJobsStorage', value: storageConnection }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'BATCH_WORKSPACE_CONTAINER', value: workspaceContainer }
        { name: 'BATCH_AUTH_MODE', value: effectiveAuthMode }
        { name: 'BATCH_AUTH_TENANTS', value: effectiveAuthTenants }
        { name: 'BATCH_AUTH_AUDIENCES', value: authAudiences }
        { name: 'BATCH_AUTH_METADATA_URL', value: authMetadataUrl }
        { name: 'BATCH_WEB_CLIENT_ID', value: webClientId }
        { name: 'BATCH_EVENTS_TOPIC_ENDPOINT', value: jobEvents.properties.endpoint }
        { name: 'BATCH_EVENTS_TOPIC_KEY', value: jobEvents.listKeys().key1 }
      ], schedulerSettings)
    }
  }
}

// ------------------------------------------------------------------ Durable Task Scheduler backend
// With durableBackend = durableTaskScheduler, orchestration state lives in a scheduler's task hub
// instead of the storage account's queues and tables. host.json stays as it is: app settings
// override its durableTask section (AzureFunctionsJobHost__…), so one package runs on either backend.
var useScheduler = durableBackend == 'durableTaskScheduler'
var taskHubName = 'BatchEndpointsHub'

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = if (useScheduler) {
  name: '${appName}-dts'
  location: location
  properties: {
    sku: schedulerSku == 'Dedicated' ? { name: 'Dedicated', capacity: schedulerCapacity } : { name: 'Consumption' }
    // An empty list denies all traffic; access is decided by the role below.
    ipAllowlist: ['0.0.0.0/0']
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = if (useScheduler) {
  parent: scheduler
  name: taskHubName
}

// Durable Task Data Contributor for the app's identity, on the scheduler.
resource schedulerData 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useScheduler) {
  name: guid(resourceGroup().id, appName, 'durable-task-data-contributor')
  scope: scheduler
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0ad04412-c4d5-4796-b79c-f76d14c8d402')
  }
}

var schedulerSettings = useScheduler
  ? [
      { name: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING', value: 'Endpoint=${scheduler!.properties.endpoint};Authentication=ManagedIdentity' }
      { name: 'AzureFunctionsJobHost__extensions__durableTask__storageProvider__type', value: 'azureManaged' }
      { name: 'AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName', value: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING' }
      { name: 'AzureFunctionsJobHost__extensions__durableTask__hubName', value: taskHubName }
    ]
  : []

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

// ---- Private networking ---------------------------------------------------------------------------

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = if (privateNetworking) {
  name: '${appName}-vnet'
  location: location
  properties: {
    addressSpace: { addressPrefixes: [vnetAddressPrefix] }
  }
}

resource appSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-01-01' = if (privateNetworking) {
  parent: vnet
  name: 'app'
  properties: {
    addressPrefix: appSubnetPrefix
    delegations: [
      {
        name: 'flex-consumption'
        properties: { serviceName: 'Microsoft.App/environments' }
      }
    ]
  }
}

resource endpointSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-01-01' = if (privateNetworking) {
  parent: vnet
  name: 'private-endpoints'
  // Subnets of one VNet are created one at a time.
  dependsOn: [appSubnet]
  properties: {
    addressPrefix: privateEndpointSubnetPrefix
    privateEndpointNetworkPolicies: 'Disabled'
  }
}

// One private endpoint, and one private DNS zone linked to the VNet, per storage service the app
// uses: blob (data, outputs, the deployment package), queue (Durable Functions), table (the
// registry, jobs, Durable Functions' history).
var storageServices = ['blob', 'queue', 'table']

resource privateDns 'Microsoft.Network/privateDnsZones@2020-06-01' = [for service in storageServices: if (privateNetworking) {
  name: 'privatelink.${service}.${environment().suffixes.storage}'
  location: 'global'
}]

resource privateDnsLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (service, i) in storageServices: if (privateNetworking) {
  parent: privateDns[i]
  name: '${appName}-vnet-link'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: { id: vnet.id }
  }
}]

resource storageEndpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = [for service in storageServices: if (privateNetworking) {
  name: '${appName}-st-${service}'
  location: location
  properties: {
    subnet: { id: endpointSubnet.id }
    privateLinkServiceConnections: [
      {
        name: 'storage-${service}'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [service]
        }
      }
    ]
  }
}]

resource storageEndpointDns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = [for (service, i) in storageServices: if (privateNetworking) {
  parent: storageEndpoint[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: service
        properties: { privateDnsZoneId: privateDns[i].id }
      }
    ]
  }
}]

// ---- App Service authentication (Easy Auth) --------------------------------------------------------

var applicationIdUri = empty(entraApplicationIdUri) ? 'api://${entraClientId}' : entraApplicationIdUri

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (appServiceAuthentication) {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // The API document and the connector definition stay readable without a token.
      excludedPaths: ['/api/openapi.json', '/api/connector/swagger.json']
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${entraTenantId}/v2.0'
        }
        validation: {
          // Tokens for this API only: its application ID URI or its client id.
          allowedAudiences: [applicationIdUri, entraClientId]
        }
      }
    }
    login: {
      tokenStore: { enabled: false }
    }
  }
}

output functionAppName string = app.name
output connectorHost string = app.properties.defaultHostName
output jobEventsTopicEndpoint string = jobEvents.properties.endpoint
output storageEventsSystemTopic string = storageEvents.name
output apiBaseUrl string = 'https://${app.properties.defaultHostName}/api'
output storageAccountName string = storage.name
output durableTaskSchedulerEndpoint string = useScheduler ? scheduler!.properties.endpoint : ''
