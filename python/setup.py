"""Build step of the `agora` package: generates the gRPC stubs from the published schema.

The schema lives once, in `crates/wire/proto/agora.proto` (linked as `agora/proto/agora.proto`).
The stubs are generated here, at build time, into `agora/_proto/`, so importing the package
never runs protoc and an installed package does not need grpcio-tools. The generated code
refuses a protobuf or grpcio runtime older than the generator, so the package's dependencies
name at least those versions, read from the generated files themselves.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO = HERE / "agora" / "proto" / "agora.proto"


def generate(out_root: Path) -> tuple[str, str]:
    """Writes `agora/_proto/agora_pb2.py` and `agora_pb2_grpc.py` under `out_root`; returns the
    (protobuf, grpcio) versions the generated code requires."""
    from grpc_tools import protoc

    if not PROTO.is_file():
        raise SystemExit(f"{PROTO} is missing: build from a checkout of the Agora repository")
    with tempfile.TemporaryDirectory() as tmp:
        # Placed at agora/_proto/ under the include root, protoc writes package-qualified
        # imports (`from agora._proto import agora_pb2`) instead of a top-level `import agora_pb2`.
        src = Path(tmp) / "agora" / "_proto"
        src.mkdir(parents=True)
        shutil.copyfile(PROTO, src / "agora.proto")
        args = ["protoc", f"-I{tmp}", f"--python_out={out_root}", f"--grpc_python_out={out_root}",
                str(src / "agora.proto")]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {PROTO}")
    pkg = out_root / "agora" / "_proto"
    (pkg / "__init__.py").write_text('"""Stubs generated from crates/wire/proto/agora.proto at build time."""\n')
    pb2 = (pkg / "agora_pb2.py").read_text()
    grpc_code = (pkg / "agora_pb2_grpc.py").read_text()
    m = re.search(r"ValidateProtobufRuntimeVersion\(\s*\S+,\s*(\d+),\s*(\d+),\s*(\d+),", pb2)
    protobuf = ".".join(m.groups()) if m else "5.26.1"
    g = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_code)
    grpcio = g.group(1) if g else "1.66.0"
    return protobuf, grpcio


def versions() -> tuple[str, str]:
    """The runtime versions the stubs need, from a throwaway generation (setup() needs them
    before any build command runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        return generate(Path(tmp))


class BuildWithStubs(build_py):
    """build_py that also generates the stubs into the build tree."""

    def run(self) -> None:
        super().run()
        generate(Path(self.build_lib))


protobuf_version, grpcio_version = versions()

setup(
    cmdclass={"build_py": BuildWithStubs},
    install_requires=[
        f"grpcio>={grpcio_version}",
        f"protobuf>={protobuf_version}",
        "numpy>=1.24",
        "cryptography>=44",  # ed25519, argon2id
        "pynacl>=1.5",  # XChaCha20-Poly1305 (libsodium)
        "blake3>=0.4",
        "mnemonic>=0.20",  # BIP-39 word list and checksum
        "websockets>=13",
    ],
)
