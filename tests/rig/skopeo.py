"""Drive `skopeo` (Debian, 1.9) as a real client, and check what it wrote.

skopeo 1.9's `dir:` transport writes, into the destination directory:
  version                     the dir-transport version ("Directory Transport Version: 1.1")
  manifest.json               the top manifest as pulled: the index with `--all`, otherwise the
                              one platform manifest skopeo picked (linux/amd64 here)
  <hex>.manifest.json         with `--all`, each instance manifest, named by its digest's hex
  <hex>                       each blob (config or layer), named by its digest's hex
Signatures, when any, are `signature-<n>` (and `<hex>.signature-<n>` per instance).

On the wire, skopeo 1.9 sends one `Accept` header line per manifest media type (six lines, the
OCI image manifest first), not one comma-separated header: a server must read them all.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.rig.registry import require_binary

SKOPEO_TIMEOUT = 300.0
_BUFFER = 1024 * 1024
_MANIFEST_SUFFIX = ".manifest.json"


def _docker_ref(ref: str) -> str:
    return ref if ref.startswith("docker://") else f"docker://{ref}"


def _creds(creds: tuple[str, str] | None) -> str:
    return f"{creds[0]}:{creds[1]}" if creds else ""


def skopeo_copy(
    src_ref: str,
    dest_dir: Path,
    *,
    all_platforms: bool = False,
    src_creds: tuple[str, str] | None = None,
    timeout: float = SKOPEO_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """`skopeo copy docker://<src_ref> dir:<dest_dir>` over plain HTTP; the caller checks
    `returncode` (a failure is often what a test wants to see)."""
    command = [
        require_binary("skopeo"),
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        # No ~/.docker or auth.json of the machine's leaks into the test.
        "--src-no-creds" if src_creds is None else f"--src-creds={_creds(src_creds)}",
    ]
    if all_platforms:
        command.append("--all")
    command += [_docker_ref(src_ref), f"dir:{dest_dir}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def skopeo_inspect_raw(
    ref: str,
    *,
    creds: tuple[str, str] | None = None,
    timeout: float = SKOPEO_TIMEOUT,
) -> bytes:
    """The manifest bytes exactly as the registry served them (`skopeo inspect --raw`)."""
    command = [require_binary("skopeo"), "inspect", "--raw", "--tls-verify=false"]
    command.append("--no-creds" if creds is None else f"--creds={_creds(creds)}")
    command.append(_docker_ref(ref))
    result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"skopeo inspect {ref} failed ({result.returncode}): {result.stderr.decode()}"
        )
    return result.stdout


def dir_digests(dest_dir: Path) -> dict[str, str]:
    """Every blob and manifest file skopeo wrote, name → `sha256:<hex>` of its content."""
    digests = {}
    for path in sorted(dest_dir.iterdir()):
        if path.name == "version" or path.name.startswith("signature") or not path.is_file():
            continue
        hasher = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_BUFFER):
                hasher.update(chunk)
        digests[path.name] = "sha256:" + hasher.hexdigest()
    return digests


def named_digest(file_name: str) -> str | None:
    """The digest a `dir:` file name promises (`<hex>` or `<hex>.manifest.json`); None for
    `manifest.json`, whose name promises nothing."""
    if file_name == "manifest.json":
        return None
    return "sha256:" + file_name.removesuffix(_MANIFEST_SUFFIX)


def verified_dir_digests(dest_dir: Path) -> set[str]:
    """The digests of everything in a `dir:` copy, after checking that each named file's
    content hashes to its name. Raises AssertionError naming the files that do not."""
    digests = dir_digests(dest_dir)
    wrong = {
        name: digest for name, digest in digests.items() if named_digest(name) not in (None, digest)
    }
    assert not wrong, f"files whose content does not match their name: {wrong}"
    return set(digests.values())
