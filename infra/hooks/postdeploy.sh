#!/bin/sh
# azd postdeploy hook: subscribe the blob-triggered function to BlobCreated events of the
# generated-data container (Flex Consumption runs blob triggers from Event Grid only). It runs
# after the code is deployed because the webhook needs the host's `blobs_extension` system key,
# which exists only once a blob-triggered function is running. Idempotent: `create` replaces a
# subscription of the same name. The values are main.bicep outputs, which azd exports here.
set -eu

: "${AZURE_RESOURCE_GROUP:?}" "${AZURE_FUNCTION_APP_NAME:?}" "${AZURE_FUNCTION_URI:?}"
: "${EVENTGRID_SYSTEM_TOPIC_NAME:?}" "${GENERATED_DATA_CONTAINER_NAME:?}"
FUNCTION="${GENERATED_DATA_FUNCTION_NAME:-}"

if [ -z "$FUNCTION" ]; then
  echo "postdeploy: no blob-triggered function (GENERATED_DATA_FUNCTION_NAME is empty); no Event Grid subscription"
  exit 0
fi
command -v az >/dev/null 2>&1 || { echo "postdeploy: the Azure CLI (az) is required" >&2; exit 1; }

KEY=$(az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
  --query "systemKeys.blobs_extension" -o tsv)
if [ -z "$KEY" ]; then
  echo "postdeploy: the app has no blobs_extension key yet (is $FUNCTION deployed with source=EventGrid?)" >&2
  exit 1
fi

az eventgrid system-topic event-subscription create \
  -g "$AZURE_RESOURCE_GROUP" --system-topic-name "$EVENTGRID_SYSTEM_TOPIC_NAME" \
  -n "generated-data-$FUNCTION" \
  --endpoint-type webhook \
  --endpoint "$AZURE_FUNCTION_URI/runtime/webhooks/blobs?functionName=Host.Functions.$FUNCTION&code=$KEY" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with "/blobServices/default/containers/$GENERATED_DATA_CONTAINER_NAME/blobs/" \
  --output none
echo "postdeploy: $FUNCTION subscribed to BlobCreated in container $GENERATED_DATA_CONTAINER_NAME"
