#!/usr/bin/env python3
"""Validates Kubernetes manifests offline against one Kubernetes release's
OpenAPI document (issue #15), strictly: an unknown field is an error.

    validate.py SWAGGER_JSON FILE...      (FILE may be - for standard input)

SWAGGER_JSON is `api/openapi-spec/swagger.json` of the pinned
k8s.io/kubernetes module (deploy/local/check-k8s.sh fetches it from the Go
module proxy). Each YAML document's apiVersion and kind pick the definition
whose `x-kubernetes-group-version-kind` names them; it is checked with JSON
Schema draft 4 after the changes kubeconform's `-strict` and
openapi2jsonschema make: objects with properties refuse other fields, and
IntOrString / Quantity accept a string or a number (the swagger types them
as strings only). A kind the release does not know is an error, except the
operators' custom resources (their own CRDs validate those at apply time),
which are checked for apiVersion, kind and metadata.name only. Prints one
line per document; exits 1 when any fails.
"""
import copy
import json
import sys

import jsonschema
import yaml

# Custom resources of the operators and tools the manifests use.
CUSTOM_GROUPS = {
    "monitoring.coreos.com",
    "kafka.strimzi.io",
    "clickhouse.altinity.com",
    "clickhouse-keeper.altinity.com",
    "mongodbcommunity.mongodb.com",
}
STRING_OR_NUMBER = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def strict(schema):
    """A copy of `schema` whose objects with properties refuse other fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def load_definitions(path):
    defs = json.load(open(path))["definitions"]
    by_gvk = {}
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            by_gvk[(gvk["group"], gvk["version"], gvk["kind"])] = name
    defs = strict(defs)
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = STRING_OR_NUMBER
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = STRING_OR_NUMBER
    return defs, by_gvk


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    defs, by_gvk = load_definitions(sys.argv[1])
    failed = checked = 0
    for path in sys.argv[2:]:
        text = sys.stdin.read() if path == "-" else open(path).read()
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            checked += 1
            api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
            name = (doc.get("metadata") or {}).get("name", "")
            what = f"{kind}/{name} ({api})"
            group, _, version = api.rpartition("/")
            if not (api and kind and name):
                print(f"FAIL  {path}: a document without apiVersion, kind or metadata.name: {what}")
                failed += 1
                continue
            if group in CUSTOM_GROUPS:
                print(f"ok    {what}: custom resource (its operator's CRD validates it)")
                continue
            definition = by_gvk.get((group, version, kind))
            if definition is None:
                print(f"FAIL  {what}: no such kind in this Kubernetes release")
                failed += 1
                continue
            schema = {"$ref": f"#/definitions/{definition}", "definitions": defs}
            errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(copy.deepcopy(doc)), key=str)
            if errors:
                failed += 1
                for e in errors[:5]:
                    where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                    print(f"FAIL  {what}: {where}: {e.message[:300]}")
            else:
                print(f"ok    {what}")
    print(f"validate: {checked} documents, {failed} failed")
    sys.exit(1 if failed or not checked else 0)


if __name__ == "__main__":
    main()
