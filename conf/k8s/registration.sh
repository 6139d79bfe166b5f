#!/usr/bin/env bash
# Registration examples for the Kubernetes deployment of conf/k8s/.
#
#   conf/k8s/registration.sh
#
# Every command runs `spinel-server entry create` inside the server pod
# (kubectl exec), over the server's admin socket: whoever may exec into
# spinel-server-0 is a Spinel administrator. Re-running is harmless: an
# entry that already exists is reported and skipped.
#
# The pattern:
#  1. one node alias for all agents of the cluster. Its parent is the
#     server (-node); it applies to every agent whose node selectors include
#     k8s_psat:cluster:demo, whatever node it runs on, so no entry is ever
#     written per node or per agent ID;
#  2. one workload entry per namespace/service account, parented to the
#     alias: every pod of that service account on any node gets
#     spiffe://example.org/ns/<namespace>/sa/<service account>.
#
# Environment: NAMESPACE (spinel), SERVER_POD (spinel-server-0),
# TRUST_DOMAIN (example.org), CLUSTER (demo, the k8s_psat cluster name).
set -euo pipefail

namespace=${NAMESPACE:-spinel}
server_pod=${SERVER_POD:-spinel-server-0}
td=${TRUST_DOMAIN:-example.org}
cluster=${CLUSTER:-demo}
alias_id="spiffe://$td/ns/spinel/sa/spinel-agent"

# Runs one `spinel-server entry create ...` in the server pod, treating
# "already exists" as done.
create() {
    local out
    if out=$(kubectl -n "$namespace" exec "$server_pod" -- spinel-server entry create "$@" 2>&1); then
        printf '%s\n\n' "$out"
    elif grep -q "AlreadyExists" <<<"$out"; then
        printf 'already registered:\n%s\n\n' "$out"
    else
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# Registers pods of service account $2 in namespace $1 (any further
# arguments are extra flags, e.g. -selector, -dns, -hint).
register_service_account() {
    local ns=$1 sa=$2
    shift 2
    create \
        -parentID "$alias_id" \
        -spiffeID "spiffe://$td/ns/$ns/sa/$sa" \
        -selector "k8s:ns:$ns" \
        -selector "k8s:sa:$sa" \
        "$@"
}

# 1. The node alias: every spinel-agent attested in cluster "demo".
#    (Narrower: add -selector k8s_psat:agent_ns:spinel
#    -selector k8s_psat:agent_sa:spinel-agent, or a node label allowed by
#    allowed_node_label_keys, e.g.
#    -selector k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a.)
create \
    -node \
    -spiffeID "$alias_id" \
    -selector "k8s_psat:cluster:$cluster"

# 2. Workloads, one entry per namespace/service account.
#    The example Deployment of 30-example-workload.yaml:
register_service_account demo demo-client

#    More examples (uncomment and adapt):
#    a service that also gets a DNS name in its X509-SVID:
# register_service_account payments api -dns api.payments.svc
#    only one container of the pods (the sidecar has no identity):
# register_service_account payments worker -selector k8s:container-name:worker
#    only the pods of one Deployment, by a label of its pod template:
# register_service_account shop frontend -selector k8s:pod-label:app:frontend

echo "entries now registered:"
kubectl -n "$namespace" exec "$server_pod" -- spinel-server entry show
