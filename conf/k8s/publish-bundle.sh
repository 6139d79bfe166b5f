#!/usr/bin/env bash
# Publishes spinel-server's trust bundle (its CA certificates, PEM) as the
# ConfigMap spinel-bundle, which agents read on their first contact with the
# server (agent.conf: trust_bundle_path = "/etc/spinel/bundle/bundle.crt").
#
#   conf/k8s/publish-bundle.sh
#
# Run it once the server is up (agent pods wait in ContainerCreating until
# the ConfigMap exists), and again at least every half ca_ttl (12 h with the
# example's 24h) so that agents on new nodes find the CA the server signs
# with by then: the CA rotates, and an agent that already runs follows the
# rotation on its own, but a fresh one trusts only this ConfigMap. A CronJob
# or your deployment pipeline can run it.
#
# Not needed with the server's Notifier "k8sbundle" (on in
# 11-server-config.yaml), which keeps the ConfigMap current by itself; this
# script is for a server configured without it.
#
# Environment: NAMESPACE (default spinel), SERVER_POD (spinel-server-0).
set -euo pipefail

namespace=${NAMESPACE:-spinel}
server_pod=${SERVER_POD:-spinel-server-0}

kubectl -n "$namespace" rollout status statefulset/spinel-server --timeout=180s

bundle=$(mktemp)
trap 'rm -f "$bundle"' EXIT
kubectl -n "$namespace" exec "$server_pod" -- \
    spinel-server bundle show -format pem >"$bundle"
if ! grep -q -- "-----BEGIN CERTIFICATE-----" "$bundle"; then
    echo "publish-bundle: the server returned no CA certificate" >&2
    exit 1
fi

# create --dry-run | apply: creates the ConfigMap, or updates it in place.
kubectl -n "$namespace" create configmap spinel-bundle \
    --from-file=bundle.crt="$bundle" --dry-run=client -o yaml |
    kubectl -n "$namespace" apply -f -
echo "published $(grep -c -- "-----BEGIN CERTIFICATE-----" "$bundle") CA certificate(s) as configmap/spinel-bundle in namespace $namespace"
