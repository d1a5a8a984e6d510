"""The committed generated code is what `make protos` produces from protos/ now."""
from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos" / "tenure" / "v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *protos], cwd=ROOT, check=True)
    generated = sorted(p.name for p in (tmp_path / "tenure" / "v1").iterdir())
    committed = sorted(p.name for p in (ROOT / "tenure" / "v1").iterdir() if p.name != "__init__.py" and p.is_file())
    assert generated == committed, "run `make protos` and commit tenure/v1"
    stale = [n for n in generated if not filecmp.cmp(tmp_path / "tenure" / "v1" / n, ROOT / "tenure" / "v1" / n, shallow=False)]
    assert not stale, f"stale generated code {stale}: run `make protos` and commit tenure/v1"


def test_every_rpc_and_message_is_commented() -> None:
    for proto in (ROOT / "protos" / "tenure" / "v1").glob("*.proto"):
        lines = proto.read_text().splitlines()
        for i, text in enumerate(lines):
            stripped = text.strip()
            if stripped.startswith(("rpc ", "message ", "service ", "enum ")):
                assert lines[i - 1].strip().startswith("//"), f"{proto.name}:{i + 1} lacks a comment: {stripped}"
