"""Generate Python code for every contract in protos/ into microservices/generated/.

The proto import root is mapped onto the output package (`-Imicroservices/generated=protos`), so
generated modules import each other as `microservices.generated.servinglab.v1...` and nobody has
to put the generated folder on sys.path. The output is not committed; `make protos` rebuilds it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = "microservices/generated"


def generate(output_root: Path = ROOT) -> list[Path]:
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PACKAGE}={PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *[f"{PACKAGE}/{proto.relative_to(PROTO_ROOT)}" for proto in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    # Every directory on the way must be a package for the absolute imports protoc writes.
    generated = output_root / PACKAGE
    for directory in [generated, *[p for p in generated.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return sorted(generated.rglob("*.py"))


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
