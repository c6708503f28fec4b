#!/bin/sh
# One-shot job of docker-compose.yml (image temporalio/admin-tools): wait for the Temporal
# frontend, then create the namespace Farline uses and the search attributes its runs set
# (FarlineAgent, FarlineState: filter runs by agent and state in the web UI). Safe to re-run.
# Creating the attributes here, before the worker starts, gives the server time to load them
# (it caches a namespace's search attributes) before the first run sets them.
set -eu

address=${TEMPORAL_ADDRESS:?}
namespace=${NAMESPACE:-default}
retention=${RETENTION:-720h}

tries=0
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 90 ]; then
    echo "Temporal at $address is not healthy after 180 s; see: docker compose logs temporal" >&2
    exit 1
  fi
  sleep 2
done

if temporal operator namespace describe --namespace "$namespace" --address "$address" >/dev/null 2>&1; then
  echo "namespace $namespace exists"
else
  temporal operator namespace create --namespace "$namespace" --retention "$retention" --address "$address"
  echo "namespace $namespace created (closed runs kept $retention)"
fi

for name in FarlineAgent FarlineState; do
  if temporal operator search-attribute list --namespace "$namespace" --address "$address" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --namespace "$namespace" --name "$name" --type Keyword \
      --address "$address"
    echo "search attribute $name created"
  fi
done
