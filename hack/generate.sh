#!/usr/bin/env bash
# Regenerates the code generated from tether's API types (api/...):
# deepcopy functions and CustomResourceDefinitions (controller-gen) and the OpenAPI definitions the
# operator's API server publishes (openapi-gen). The generators come from
# the Go module proxy at the versions pinned here; TestGenerated checks the
# checked-in files match.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTROLLER_TOOLS=v0.23.0
KUBE_OPENAPI=$(go list -m -f '{{.Version}}' k8s.io/kube-openapi)
out=${GENERATE_DIR:-.}
gen="sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS"
for pkg in api/v1alpha1 api/queues/v1alpha1 api/policies/v1alpha1; do
  go run "$gen" object paths="./$pkg" output:object:dir="$out/$pkg"
done
# The CustomResourceDefinitions tether operator install applies (embedded).
go run "$gen" crd paths=./api/queues/... paths=./api/policies/... output:crd:dir="$out/internal/deploy/crds"
mkdir -p "$out/internal/operator/apiserver/openapi"
header=$(mktemp)
trap 'rm -f "$header"' EXIT
go run "k8s.io/kube-openapi/cmd/openapi-gen@$KUBE_OPENAPI" --go-header-file "$header" \
  --output-dir "$out/internal/operator/apiserver/openapi" \
  --output-pkg github.com/tether-dev/tether/internal/operator/apiserver/openapi \
  --output-file zz_generated.openapi.go --report-filename /dev/null \
  k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version ./api/v1alpha1
