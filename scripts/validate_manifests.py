#!/usr/bin/env python3
"""Validates the manifests under deploy/ offline, strictly (unknown fields are
errors):

- Kubernetes kinds (Deployment, Service, HPA, Secret, ...) with
  `kubernetes-validate --strict` (PyPI; JSON schemas of Kubernetes 1.37 in the
  package);
- KServe kinds (ClusterServingRuntime, ServingRuntime, InferenceService)
  against the field names and types of the KServe Python SDK's generated
  models (the `kserve==0.21.0` wheel, read without installing it or its
  dependencies), descending into embedded Kubernetes types (containers,
  probes, ...) with the same Kubernetes schemas.

    scripts/validate_manifests.py [--quiet] [FILE.yaml ...]   # default: deploy/**/*.yaml

Needs `.venv/bin/pip install kubernetes-validate`; downloads the kserve wheel
once into ~/.cache/anemone/kserve-wheel (or $KSERVE_WHEEL_DIR).
"""
import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
KSERVE = "kserve==0.21.0"
K8S_VERSION = "1.37.0"
KSERVE_KINDS = {
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}


def kserve_models():
    """{class name: {yaml key: type string}} from the kserve wheel's models."""
    where = Path(os.environ.get("KSERVE_WHEEL_DIR", Path.home() / ".cache/anemone/kserve-wheel"))
    wheels = list(where.glob("kserve-*.whl"))
    if not wheels:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", KSERVE, "-d", str(where)],
                       check=True)
        wheels = list(where.glob("kserve-*.whl"))
    models = {}
    with zipfile.ZipFile(wheels[0]) as z:
        for name in z.namelist():
            if not re.match(r"kserve/models/v1(alpha1|beta1)_.*\.py$", name):
                continue
            tree = ast.parse(z.read(name))
            for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
                found = {}
                for stmt in cls.body:
                    if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                        if stmt.targets[0].id in ("openapi_types", "attribute_map"):
                            found[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                if len(found) == 2:
                    models[cls.name] = {found["attribute_map"][k]: t for k, t in found["openapi_types"].items()}
    return models


def k8s_schema_dir():
    return Path(kubernetes_validate.__file__).parent / f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"


def check_k8s_type(type_name, value, path, errors):
    """An embedded Kubernetes type (V1Container, V1Probe, ...) against its schema."""
    base = type_name[len("V1"):].lower()
    found = sorted(k8s_schema_dir().glob(f"{base}-*v1.json"))
    schema_file = found[0] if found else None
    if schema_file is None:
        errors.append(f"{path}: no schema for {type_name}")
        return
    import json
    from referencing import Registry, Resource
    schema = json.loads(schema_file.read_text())
    definitions = json.loads((schema_file.parent / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    for e in jsonschema.Draft202012Validator(schema, registry=registry).iter_errors(value):
        errors.append(f"{path}.{'.'.join(map(str, e.absolute_path))}: {e.message}")


def check(models, type_name, value, path, errors):
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return errors.append(f"{path}: expected a list")
        for i, v in enumerate(value):
            check(models, type_name[5:-1], v, f"{path}[{i}]", errors)
    elif type_name.startswith("dict("):
        if not isinstance(value, dict):
            return errors.append(f"{path}: expected a map")
    elif type_name in models:
        if not isinstance(value, dict):
            return errors.append(f"{path}: expected an object ({type_name})")
        fields = models[type_name]
        for k, v in value.items():
            if k not in fields:
                errors.append(f"{path}.{k}: unknown field for {type_name} (known: {', '.join(sorted(fields))})")
            else:
                check(models, fields[k], v, f"{path}.{k}", errors)
    elif type_name == "str":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string")
    elif type_name == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false")
    elif type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer")
    elif type_name.startswith("V1") and not type_name.startswith(("V1alpha1", "V1beta1")):
        check_k8s_type(type_name, value, path, errors)
    # object, datetime and the like: anything goes.


def main():
    quiet = "--quiet" in sys.argv
    files = [Path(a) for a in sys.argv[1:] if a != "--quiet"] or sorted((ROOT / "deploy").rglob("*.yaml"))
    errors, core_files = [], []
    models = None
    for f in files:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in KSERVE_KINDS:
                models = models or kserve_models()
                before = len(errors)
                check(models, KSERVE_KINDS[key], doc, f"{f.name}:{doc['kind']}", errors)
                if not quiet or len(errors) != before:
                    print(f"{'ok  ' if len(errors) == before else 'FAIL'} {f} {doc['kind']} (kserve 0.21.0 models)")
            elif f not in core_files:
                core_files.append(f)
    if core_files:
        # KServe kinds in these files are reported as "no schema" warnings: checked above.
        r = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--no-warn", *(["--quiet"] if quiet else []),
                            "-k", K8S_VERSION, *map(str, core_files)], capture_output=True, text=True)
        print(r.stdout, end="")
        if r.returncode != 0:
            errors.append(f"kubernetes-validate failed:\n{r.stdout}{r.stderr}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
