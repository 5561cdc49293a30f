"""Generate Python code from proto/tally/v1 into libs/contracts, or check it has not drifted.

python scripts/protogen.py          # regenerate (make proto)
python scripts/protogen.py --check  # exit 1 if the committed code differs (make lint)
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
SOURCES = sorted((PROTO_ROOT / "tally" / "v1").glob("*.proto"))
TARGET = ROOT / "libs" / "contracts" / "src" / "tally_contracts" / "v1"
WELL_KNOWN = Path(protoc.__file__).parent / "_proto"


def generate(out: Path) -> dict[str, str]:
    """Run protoc into `out`; return {file name: text} of what lands in tally_contracts/v1."""
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{WELL_KNOWN}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *(str(s) for s in SOURCES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = out / "tally" / "v1"
    return {p.name: p.read_text() for p in sorted(generated.iterdir()) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
    if args.check:
        drift = False
        for name, text in files.items():
            current = (TARGET / name).read_text() if (TARGET / name).exists() else ""
            if current != text:
                drift = True
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"committed/{name}",
                        f"generated/{name}",
                    )
                )
        if drift:
            print(
                "generated protobuf code is out of date: run `make proto` and commit",
                file=sys.stderr,
            )
            return 1
        print(f"protobuf code matches {', '.join(s.name for s in SOURCES)}")
        return 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (TARGET / name).write_text(text)
    print(f"wrote {', '.join(files)} to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
