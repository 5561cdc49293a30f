"""`tally models …`: the tenant's detectors in the model registry, through the SDK.

    tally models list
    tally models add FILE.onnx --name NAME --format yolov8 --labels whitefly,thrips
                     [--input-size 640] [--wait]
    tally models show ID
    tally models delete ID

A session runs one with `tally upload DIR --model NAME[:VERSION]`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tally_client.sdk import TallyClient

FORMATS = ("tally", "yolov8", "yolov5")
WAIT_S = 300.0  # --wait: for the dry run on Triton, at most


def add_parser(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`models` and its commands, on `tally`'s subparsers (`groups`)."""
    models = groups.add_parser("models", help="detectors: upload ONNX models, list, delete")
    commands = models.add_subparsers(dest="models_command", required=True)
    commands.add_parser("list", help="your models and the shared ones, the default first")
    add = commands.add_parser("add", help="upload a new version of a model (an ONNX file)")
    add.add_argument("file", type=Path)
    add.add_argument("--name", required=True, help="lower-case letters, digits, '.', '_', '-'")
    add.add_argument("--format", dest="model_format", required=True, choices=FORMATS)
    add.add_argument(
        "--labels", required=True, help="the class names in the model's order, comma-separated"
    )
    add.add_argument("--input-size", type=int, default=None, help="a static-shape model's side")
    add.add_argument(
        "--wait", action="store_true", help="until it is ready or failed on the inference server"
    )
    for name, about in (("show", "one model version"), ("delete", "delete one of your versions")):
        commands.add_parser(name, help=about).add_argument("model_id")


def run(client: TallyClient, args: argparse.Namespace, console: Console) -> int:
    command: str = args.models_command
    if command == "list":
        console.print(_table(client.list_models()))
    elif command == "add":
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
        model = client.upload_model(
            args.file, args.name, args.model_format, labels, args.input_size
        )
        if args.wait:
            deadline = time.monotonic() + WAIT_S
            while model["status"] == "validating" and time.monotonic() < deadline:
                time.sleep(1.0)
                model = client.model(model["model_id"])
        console.print(_table([model]))
        if model["status"] == "failed":
            return 1
    elif command == "show":
        console.print(_table([client.model(args.model_id)]))
    else:  # delete
        client.delete_model(args.model_id)
        console.print(f"model {args.model_id} deleted", highlight=False)
    return 0


def _table(models: list[dict[str, Any]]) -> Table:
    table = Table(title="models")
    table.add_column("id", no_wrap=True)  # whole, to copy into the other commands
    for column in ("model", "format", "labels", "input", "status", "whose"):
        table.add_column(column)
    for model in models:
        whose = "default" if model["default"] else "shared" if model["shared"] else "yours"
        status = model["status"] if not model.get("error") else f"failed: {model['error']}"
        table.add_row(
            model["model_id"],
            f"{model['name']}:{model['version']}",
            model["format"],
            ", ".join(model["labels"]),
            str(model["input_size"] or "any"),
            status,
            whose,
        )
    return table
