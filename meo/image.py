"""Builds the mecfed echo app image locally, without any registry.

The image is ``FROM scratch`` with two files: a static busybox (for debugging
with ``docker exec``) and the static RFC 862 echo server compiled from
``meo/app/echo.c``. Its default command runs the echo server, which listens on
``$ECHO_PORT`` (the MEO sets it from ``AppSpec.echo_port``) or 7.

Building is idempotent: the image carries a ``mecfed.content-hash`` label
over its inputs and is only rebuilt when they change.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker

log = logging.getLogger(__name__)

DEFAULT_TAG = "mecfed/echo:1"
HASH_LABEL = "mecfed.content-hash"
ECHO_SOURCE = Path(__file__).with_name("app") / "echo.c"
BUSYBOX = Path("/bin/busybox")
_DOCKERFILE = f"""FROM scratch
COPY bin/ /bin/
COPY echo /echo
LABEL {HASH_LABEL}="{{digest}}"
CMD ["/echo"]
"""


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def build_echo_binary(out_dir: str | Path | None = None) -> Path:
    """Compiles echo.c statically and returns the binary's path.

    The output name carries a hash of the source so a cached binary is reused
    until the source changes (the netns VIM runs it directly)."""
    src = ECHO_SOURCE.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out = Path(out_dir or Path(tempfile.gettempdir()) / "mecfed-bin")
    out.mkdir(parents=True, exist_ok=True)
    binary = out / f"echo-{digest}"
    if binary.exists():
        return binary
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is needed to build the echo server (apt-get install gcc libc6-dev)")
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    subprocess.run(
        ["gcc", "-static", "-O2", "-Wall", "-o", str(tmp), str(ECHO_SOURCE)],
        check=True,
        capture_output=True,
    )
    tmp.replace(binary)  # atomic: concurrent builders never see half a file
    return binary


def _ensure_busybox() -> Path:
    if not BUSYBOX.exists():
        # Debian's busybox-static provides a statically linked /bin/busybox.
        subprocess.run(["apt-get", "install", "-y", "busybox-static"], check=True)
    return BUSYBOX


def _context_tar(echo: bytes, busybox: bytes, digest: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", _DOCKERFILE.format(digest=digest).encode(), 0o644)
        add("echo", echo)
        add("bin/busybox", busybox)
        for applet in ("sh", "ip", "ping", "ls", "cat", "nc"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def build_image(tag: str = DEFAULT_TAG, client: docker.DockerClient | None = None) -> str:
    """Builds (or reuses) the echo image under ``tag``; returns the image id."""
    client = client or docker.from_env()
    echo = build_echo_binary().read_bytes()
    busybox = _ensure_busybox().read_bytes()
    digest = _sha256(echo, busybox, _DOCKERFILE.encode())
    try:
        existing = client.images.get(tag)
        if (existing.labels or {}).get(HASH_LABEL) == digest:
            log.debug("image %s is up to date", tag)
            return existing.id
    except docker.errors.ImageNotFound:
        pass
    image, _ = client.images.build(
        fileobj=io.BytesIO(_context_tar(echo, busybox, digest)),
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
    )
    log.info("built image %s (%s)", tag, image.id)
    return image.id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the mecfed echo app image.")
    parser.add_argument("--tag", default=DEFAULT_TAG)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(build_image(args.tag))


if __name__ == "__main__":
    main()
