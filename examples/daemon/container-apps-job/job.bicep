// An Azure Container Apps job running `jitd --once` every minute with a
// user-assigned managed identity: no server to patch, no secret to rotate,
// and a close within a minute of expiry. For sub-second closes run jitd as
// a service (a Container App with minReplicas 1, or systemd) instead.
//
//   az deployment group create -g ops -f job.bicep \
//     -p environmentId=<container apps environment id> identityId=<identity id> \
//        identityClientId=<its client id> watchedResourceGroup=<sub>/<rg>
param location string = resourceGroup().location
param environmentId string
param identityId string
param identityClientId string
@description('<subscription id>/<resource group> whose NSGs jitd watches')
param watchedResourceGroup string
param image string = 'ghcr.io/jitaccess/jitd:0.1.0'

resource job 'Microsoft.App/jobs@2024-03-01' = {
  name: 'jitd'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    environmentId: environmentId
    configuration: {
      triggerType: 'Schedule'
      scheduleTriggerConfig: { cronExpression: '* * * * *', parallelism: 1, replicaCompletionCount: 1 }
      replicaTimeout: 300
      replicaRetryLimit: 1
    }
    template: {
      containers: [
        {
          name: 'jitd'
          image: image
          args: ['--once', '--resource-group', watchedResourceGroup]
          env: [
            { name: 'ARM_USE_MSI', value: 'true' }
            { name: 'ARM_USE_CLI', value: 'false' }
            { name: 'ARM_CLIENT_ID', value: identityClientId }
            { name: 'ARM_TENANT_ID', value: tenant().tenantId }
            { name: 'ARM_SUBSCRIPTION_ID', value: subscription().subscriptionId }
          ]
          resources: { cpu: json('0.25'), memory: '0.5Gi' }
        }
      ]
    }
  }
}
