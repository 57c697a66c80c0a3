"""Renders and lints the Helm chart with Helm's own SDK (helm-python-sdk) and
validates every rendered object strictly against the Kubernetes schemas
(kubernetes-validate). Prints one JSON document for operator/tests/chart.rs:

  {"lint": {...}, "renders": {values-file: [object, ...]},
   "invalid": {values-file: [message, ...]}, "refused": {name: message}}

Usage: check_chart.py CHART KUBE_VERSION...
"""

import json
import pathlib
import sys

import helm_python
import kubernetes_validate
import yaml

# Kinds kubernetes-validate has no schema for (a CRD's kind); the test
# checks these itself.
NOT_VALIDATED = {("monitoring.coreos.com/v1", "ServiceMonitor")}

# Values the schema must refuse, with the key the message must name.
BAD_VALUES = {
    "replicas-not-a-number": ({"replicas": "two"}, "/replicas"),
    "misspelt-key": ({"leaderElection": {"enable": True}}, "enable"),
    "bad-namespace": ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
    "bad-pull-policy": ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
}


def render(chart, values):
    manifests = chart.render(values, name="tributary", namespace="tributary-system", is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    notes = "".join(t for p, t in manifests.items() if p.endswith("NOTES.txt"))
    return objects, notes


def main():
    chart_dir = pathlib.Path(sys.argv[1])
    versions = sys.argv[2:]
    chart = helm_python.Chart.load(str(chart_dir))
    out = {"lint": {}, "renders": {}, "notes": {}, "invalid": {}, "refused": {}}
    # The chart's own defaults (no values at all: what `helm install`
    # without -f gives), then every values file in ci/.
    sources = [("chart-defaults", {})]
    for values_file in sorted((chart_dir / "ci").glob("*.yaml")):
        sources.append((values_file.stem, yaml.safe_load(values_file.read_text()) or {}))
    for name, values in sources:
        out["lint"][name] = helm_python.lint(str(chart_dir), values, strict=True, namespace="tributary-system")
        objects, notes = render(chart, values)
        out["renders"][name] = objects
        out["notes"][name] = notes
        problems = []
        for obj in objects:
            if (obj.get("apiVersion"), obj.get("kind")) in NOT_VALIDATED:
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = "/".join(str(p) for p in e.path)
                    problems.append(f"{version} {obj['kind']} {obj['metadata']['name']} at {where}: {e.message}")
        out["invalid"][name] = problems
    for name, (values, _) in BAD_VALUES.items():
        try:
            chart.render(values, name="tributary", namespace="tributary-system", is_install=True)
            out["refused"][name] = None
        except helm_python.HelmValuesError as e:
            out["refused"][name] = str(e)
    out["expected_refusals"] = {name: key for name, (_, key) in BAD_VALUES.items()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
