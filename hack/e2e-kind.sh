#!/usr/bin/env bash
# `make e2e-kind`: the operator's image in a kind cluster, then the same test suite as
# `make test`, pointed at that cluster. Needs Docker and kind (not available in this
# repository's CI, which runs the suite on a local control plane instead).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-cerebelum-e2e}
IMAGE=cerebelum-operator:e2e
NAMESPACE=cerebelum-e2e
KUBECONFIG_FILE=.devcluster/kind.kubeconfig
HELM=$(.venv/bin/python -m cerebelum.devcluster which helm)
KUBECTL=$(.venv/bin/python -m cerebelum.devcluster which kubectl)
kubectl() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

mkdir -p .devcluster
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 2m
kind get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_FILE"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

# The deployed operator watches only its own namespace, so the suite below (which starts
# its own operator processes in fresh namespaces) never meets it.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
"$HELM" --kubeconfig "$KUBECONFIG_FILE" upgrade --install cerebelum-operator charts/cerebelum-operator \
  --namespace "$NAMESPACE" --set "watchNamespaces={$NAMESPACE}" \
  --set image.repository=cerebelum-operator --set image.tag=e2e --set image.pullPolicy=Never \
  --wait --timeout 5m

# The image, the chart's RBAC and its webhooks, for real: an approval through the webhook.
kubectl -n "$NAMESPACE" delete workflow approval-demo --ignore-not-found
kubectl -n "$NAMESPACE" apply -f examples/approval.yaml
kubectl -n "$NAMESPACE" wait --for=jsonpath='{.status.phase}'=WaitingForApproval workflow/approval-demo --timeout=2m
kubectl -n "$NAMESPACE" annotate workflow approval-demo cerebelum.io/approve=go_live cerebelum.io/reason=e2e
kubectl -n "$NAMESPACE" wait --for=condition=Succeeded workflow/approval-demo --timeout=2m
kubectl -n "$NAMESPACE" get workflow approval-demo -o jsonpath='{.status.steps.go_live.approval.decidedBy}{"\n"}'

CEREBELUM_TEST_KUBECONFIG="$KUBECONFIG_FILE" .venv/bin/pytest tests
