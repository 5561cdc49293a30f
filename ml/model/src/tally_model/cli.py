"""`tally-train`: train TallyNet on generated photos and export it to ONNX."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from tally_model.export import export_onnx
from tally_model.train import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="tally-train", description=__doc__)
    parser.add_argument("--onnx", type=Path, required=True, help="where to write the model")
    parser.add_argument("--checkpoint", type=Path, help="also save the PyTorch state dict here")
    parser.add_argument("--metrics", type=Path, help="write training metrics as JSON here")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
        )
    args = parser.parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    print(f"config: {dataclasses.asdict(config)}", flush=True)

    result = train(config, log=lambda line: print(line, flush=True))
    if args.checkpoint:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result.model.state_dict(), args.checkpoint)
    drift = export_onnx(result.model, args.onnx)
    size_mb = args.onnx.stat().st_size / 1e6
    print(f"exported {args.onnx} ({size_mb:.2f} MB); max |onnxruntime - torch| = {drift:.2e}")
    if args.metrics:
        args.metrics.write_text(
            json.dumps(
                {
                    "config": dataclasses.asdict(config),
                    "validation": result.metrics,
                    "train_seconds": round(result.seconds),
                    "onnx_mb": round(size_mb, 2),
                },
                indent=1,
            )
            + "\n"
        )
    if drift > 1e-3:
        print("ONNX Runtime disagrees with PyTorch", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
