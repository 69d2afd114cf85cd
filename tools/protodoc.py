"""Writes docs/api.md, the API reference, from proto/cdx/v1/*.proto and cdx.errors.

Run by `make proto` (after regenerating the stubs); tests/unit/test_api_docs.py fails when the
committed reference is stale. The reference is built from the compiled descriptors (so it is
exactly what the stubs implement) plus the comments in the .proto sources.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto" / "cdx" / "v1"
ORDER = ("common", "exchange", "registry", "consent", "audit", "notify")


def _comments(source: str) -> dict[str, str]:
    """Leading ``//`` comments and trailing same-line comments, keyed by declaration."""
    out: dict[str, str] = {}
    pending: list[str] = []
    scope: list[str] = []
    for raw in source.splitlines():
        line = raw.strip()
        if line.startswith("//"):
            text = line[2:].strip()
            if text and set(text) != {"-"}:
                pending.append(text)
            continue
        decl = re.match(r"(service|message|enum)\s+(\w+)", line)
        rpc_m = re.match(r"rpc\s+(\w+)", line)
        field = re.match(r"(?:repeated\s+|optional\s+)?[\w.]+\s+(\w+)\s*=\s*\d+", line)
        value = re.match(r"(\w+)\s*=\s*\d+\s*;", line)
        trailing = raw.split("//", 1)[1].strip() if "//" in raw else ""
        key = None
        if decl:
            key = decl.group(2)
            scope.append(key)
        elif rpc_m and scope:
            key = f"{scope[-1]}.{rpc_m.group(1)}"
        elif field and scope:
            key = f"{scope[-1]}.{field.group(1)}"
        elif value and scope:
            key = f"{scope[-1]}.{value.group(1)}"
        if key:
            text = " ".join([*pending, trailing]).strip()
            if text:
                out[key] = text
        pending = []
        if line.startswith("}") and scope:
            scope.pop()
    return out


def _type_name(field: object) -> str:
    from google.protobuf.descriptor import FieldDescriptor as F

    f = field  # type: ignore[assignment]
    names = {
        F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_BOOL: "bool",
        F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64", F.TYPE_INT32: "int32",
        F.TYPE_UINT32: "uint32", F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float",
    }  # fmt: skip
    if f.type == F.TYPE_MESSAGE:  # type: ignore[attr-defined]
        name = f.message_type.full_name  # type: ignore[attr-defined]
    elif f.type == F.TYPE_ENUM:  # type: ignore[attr-defined]
        name = f.enum_type.full_name  # type: ignore[attr-defined]
    else:
        name = names.get(f.type, "?")  # type: ignore[attr-defined]
    name = name.removeprefix("cdx.v1.")
    repeated = getattr(f, "is_repeated", None)
    if repeated is None:
        repeated = f.label == F.LABEL_REPEATED  # type: ignore[attr-defined]
    return f"repeated {name}" if repeated else name


def render() -> str:
    sys.path.insert(0, str(ROOT))
    import importlib

    from cdx import errors

    lines = [
        "# CDX API reference",
        "",
        "Generated from `proto/cdx/v1/*.proto` by `tools/protodoc.py` (`make proto`); do not edit.",
        "",
        "Every call is gRPC over mutual TLS with certificates the registry issues. A refused call",
        "carries a gRPC status and a stable error code in the `cdx-error-code` trailing metadata",
        "(see [Error codes](#error-codes)).",
        "",
    ]
    for name in ORDER:
        module = importlib.import_module(f"cdx.v1.{name}_pb2")
        fd = module.DESCRIPTOR
        comments = _comments((PROTO_DIR / f"{name}.proto").read_text())
        lines += [f"## {name}.proto", ""]
        header = (PROTO_DIR / f"{name}.proto").read_text().splitlines()
        intro = []
        for h in header:  # the file's leading comment block
            if not h.startswith("//"):
                break
            intro.append(h[2:].strip())
        if intro:
            lines += [" ".join(intro), ""]
        for svc in fd.services_by_name.values():
            lines += [f"### service `{svc.name}`", ""]
            if svc.name in comments:
                lines += [comments[svc.name], ""]
            lines += ["| rpc | request | response | notes |", "|---|---|---|---|"]
            for m in svc.methods:
                req = m.input_type.full_name.removeprefix("cdx.v1.")
                resp = m.output_type.full_name.removeprefix("cdx.v1.")
                if m.server_streaming:
                    resp = f"stream {resp}"
                note = comments.get(f"{svc.name}.{m.name}", "")
                lines.append(f"| `{m.name}` | `{req}` | `{resp}` | {note} |")
            lines.append("")
        for enum in fd.enum_types_by_name.values():
            lines += [f"### enum `{enum.name}`", ""]
            values = ", ".join(f"`{v.name}`" for v in enum.values)
            lines += [values, ""]
        for msg in fd.message_types_by_name.values():
            lines += [f"### message `{msg.name}`", ""]
            if msg.name in comments:
                lines += [comments[msg.name], ""]
            if not msg.fields:
                lines += ["(no fields)", ""]
                continue
            lines += ["| # | field | type | notes |", "|---|---|---|---|"]
            for f in msg.fields:
                note = comments.get(f"{msg.name}.{f.name}", "").replace("|", "\\|")
                lines.append(f"| {f.number} | `{f.name}` | `{_type_name(f)}` | {note} |")
            lines.append("")
    lines += ["## Error codes", "", "| code | gRPC status | meaning |", "|---|---|---|"]
    for cls in sorted(errors.GRPC_STATUS, key=lambda c: c.code):
        doc = (cls.__doc__ or "").split("\n", 1)[0]
        lines.append(f"| `{cls.code}` | `{errors.GRPC_STATUS[cls].name}` | {doc} |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    target = ROOT / "docs" / "api.md"
    target.write_text(render())
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
