"""Versioned model artifacts: a skops file plus `metadata.json`, verified before anything loads.

Layout: `models/<profile>/<version>/{model.skops, metadata.json}` and `models/<profile>/CURRENT`
naming the version to serve. skops is used instead of pickle so loading cannot run arbitrary code,
and only the types listed in `TRUSTED_TYPE_PREFIXES` are accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
CURRENT_FILE = "CURRENT"
DEFAULT_MODELS_ROOT = Path("models")
# Types a penguin pipeline is made of. Anything else inside a model file means it is not ours.
TRUSTED_TYPE_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.", "_loss.")


VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ArtifactError(RuntimeError):
    """The artifact is missing, corrupted, or not one this code is willing to load."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    estimator: Any
    metadata: dict


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_dir(
    location: str | os.PathLike | None = None, profile: str | None = None
) -> Path:
    """Accept a version directory, a profile directory (follows CURRENT) or the models root."""
    path = Path(location) if location else DEFAULT_MODELS_ROOT
    for candidate in (path, path / (profile or "linear")):
        if (candidate / METADATA_FILE).is_file():
            return candidate
        if (candidate / CURRENT_FILE).is_file():
            return candidate / (candidate / CURRENT_FILE).read_text().strip()
    raise ArtifactError(
        f"No model artifact at {path.resolve()}: expected {METADATA_FILE} or {CURRENT_FILE}. "
        "Train one with `make train` (or `make train PROFILE=forest`)."
    )


def save_artifact(estimator: Any, metadata: dict, profile_dir: Path) -> Path:
    """Write a new version directory and point CURRENT at it only once it is complete."""
    import skops.io

    version_dir = profile_dir / metadata["version"]
    version_dir.mkdir(parents=True, exist_ok=True)
    model_path = version_dir / MODEL_FILE
    skops.io.dump(estimator, model_path)
    metadata = {**metadata, "model_file": MODEL_FILE, "model_sha256": sha256_file(model_path)}
    (version_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    pointer = profile_dir / (CURRENT_FILE + ".tmp")
    pointer.write_text(metadata["version"] + "\n")
    pointer.replace(profile_dir / CURRENT_FILE)
    return version_dir


def read_metadata(version_dir: Path) -> dict:
    try:
        return json.loads((version_dir / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Cannot read {version_dir / METADATA_FILE}: {exc}") from exc


def load_artifact(
    location: str | os.PathLike | None = None, profile: str | None = None
) -> Artifact:
    # Imported here, not at the top: skops imports the whole of scikit-learn (1.3 s of CPU), and
    # the processes that import this module only for its paths and metadata (the postprocess
    # stage, the gateways, the launcher) never load a model.
    import skops.io

    version_dir = resolve_model_dir(location, profile)
    metadata = read_metadata(version_dir)
    model_path = version_dir / metadata.get("model_file", MODEL_FILE)
    if not model_path.is_file():
        raise ArtifactError(f"Model file {model_path} named by {METADATA_FILE} does not exist.")
    actual = sha256_file(model_path)
    if actual != metadata.get("model_sha256"):
        raise ArtifactError(
            f"Refusing to load {model_path}: its sha256 is {actual}, but {METADATA_FILE} "
            f"says {metadata.get('model_sha256')}. The file was changed or corrupted; retrain with `make train`."
        )
    untrusted = skops.io.get_untrusted_types(file=model_path)
    unexpected = [name for name in untrusted if not name.startswith(TRUSTED_TYPE_PREFIXES)]
    if unexpected:
        raise ArtifactError(
            f"Refusing to load {model_path}: it contains unexpected types {unexpected}."
        )
    estimator = skops.io.load(model_path, trusted=untrusted)
    return Artifact(path=version_dir, estimator=estimator, metadata=metadata)


def sibling_version(served: Path, version: str) -> Path:
    """The directory of another version of the same profile as `served`, checked to be one.

    The version comes from the network (a gateway asks a stage for it), so it must name a plain
    directory beside the served one, never a path.
    """
    if not VERSION_PATTERN.fullmatch(version):
        raise ArtifactError(f"{version!r} is not a model version name")
    candidate = served.parent / version
    if not (candidate / METADATA_FILE).is_file():
        raise ArtifactError(f"model version {version} is not in {served.parent}")
    return candidate


def set_current(profile_dir: Path, version: str) -> None:
    """Point CURRENT at an existing version, atomically: what a rollout flips before restarting."""
    sibling_version(profile_dir / CURRENT_FILE, version)
    pointer = profile_dir / (CURRENT_FILE + ".tmp")
    pointer.write_text(version + "\n")
    pointer.replace(profile_dir / CURRENT_FILE)
