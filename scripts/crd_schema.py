"""Turn a CustomResourceDefinition into the JSON schema of its objects (deploy/k8s/schemas).

    python scripts/crd_schema.py CRD.yaml VERSION OUT.json

The CRD's openAPIV3Schema for VERSION, with apiVersion and kind fixed, and made strict: an
object that lists its properties and neither allows others nor preserves unknown fields gets
`additionalProperties: false`, so a misspelt field fails validation instead of being dropped by
the API server's pruning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def object_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    spec = crd["spec"]
    (served,) = [v for v in spec["versions"] if v["name"] == version]
    schema = strict(served["schema"]["openAPIV3Schema"])
    schema.setdefault("properties", {})
    schema["properties"]["apiVersion"] = {"const": f"{spec['group']}/{version}"}
    schema["properties"]["kind"] = {"const": spec["names"]["kind"]}
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return dict(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd", type=Path)
    parser.add_argument("version")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    crd = yaml.safe_load(args.crd.read_text())
    args.out.write_text(
        json.dumps(object_schema(crd, args.version), indent=1, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    main()
