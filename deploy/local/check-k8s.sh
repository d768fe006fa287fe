#!/usr/bin/env bash
# The production manifests, validated offline (issue #15):
#
#   deploy/local/check-k8s.sh
#
# - `helm lint` of the chart (deploy/k8s/smartlinks), with its defaults and
#   with every option on (deploy/k8s/ci-values.yaml);
# - `helm template` of both, and every rendered document checked strictly
#   against the OpenAPI document of a pinned Kubernetes release
#   (deploy/k8s/validate.py: unknown fields, wrong types, missing required
#   fields fail), with the operators' example resources (deploy/k8s/operators)
#   parsed and named.
# Helm (helm.sh/helm/v4) is built with Go from the Go module proxy, and the
# OpenAPI document comes from the k8s.io/kubernetes module on the same proxy:
# both are cached under $SMARTLINKS_CACHE_DIR, so later runs need no network.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION=v4.3.2
K8S_VERSION=v1.36.3
CHART="$ROOT/deploy/k8s/smartlinks"
command -v go >/dev/null || die "check-k8s: Go is needed (this project's machines have it)"
HELM="$CACHE/helm-$HELM_VERSION/helm"
if [ ! -x "$HELM" ]; then
  log "check-k8s: building helm $HELM_VERSION from the Go module proxy (once)"
  mkdir -p "$(dirname "$HELM")"
  GOBIN="$(dirname "$HELM")" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" ||
    die "check-k8s: building helm failed"
fi
SPEC="$CACHE/k8s-openapi-$K8S_VERSION.json"
if [ ! -s "$SPEC" ]; then
  log "check-k8s: Kubernetes $K8S_VERSION's OpenAPI document from the Go module proxy (once)"
  dir=$(cd "$CACHE" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || die "check-k8s: downloading k8s.io/kubernetes failed"
  cp "$dir/api/openapi-spec/swagger.json" "$SPEC.tmp" && mv "$SPEC.tmp" "$SPEC"
fi
PY=python3
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  venv="$CACHE/k8s-venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'jsonschema==4.23.0' 'PyYAML==6.0.2' || die "check-k8s: installing jsonschema failed"
  PY="$venv/bin/python"
fi

fail=0
for values in "" "$ROOT/deploy/k8s/ci-values.yaml"; do
  args=(); what="defaults"
  [ -n "$values" ] && { args=(-f "$values"); what="deploy/k8s/ci-values.yaml"; }
  log "check-k8s: helm lint + template ($what) against Kubernetes $K8S_VERSION"
  "$HELM" lint --strict "$CHART" "${args[@]}" >"$STATE/helm-lint.log" 2>&1 || { cat "$STATE/helm-lint.log"; fail=1; }
  if "$HELM" template smartlinks "$CHART" --namespace smartlinks --kube-version "${K8S_VERSION#v}" "${args[@]}" >"$STATE/helm-template.yaml"; then
    "$PY" "$ROOT/deploy/k8s/validate.py" "$SPEC" "$STATE/helm-template.yaml" | grep -v '^ok ' || true
    "$PY" "$ROOT/deploy/k8s/validate.py" "$SPEC" "$STATE/helm-template.yaml" >/dev/null || fail=1
  else
    fail=1
  fi
done
log "check-k8s: the operators' example resources"
"$PY" "$ROOT/deploy/k8s/validate.py" "$SPEC" "$ROOT"/deploy/k8s/operators/*.yaml | tail -1
"$PY" "$ROOT/deploy/k8s/validate.py" "$SPEC" "$ROOT"/deploy/k8s/operators/*.yaml >/dev/null || fail=1
[ "$fail" -eq 0 ] || die "check-k8s: the manifests do not validate"
log "check-k8s: OK"
