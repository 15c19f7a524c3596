"""Stages that follow a rollout: one per model version asked for, one per list of class names.

During a rollout two model versions are live, and inference is the authority on which one scores a
request. Whoever preprocesses for it (the preprocess service, the split gateway) keeps the
preprocessing parameters of a few versions, loaded on demand (`VersionedPreprocessors`), so it can
always compute the features of the version inference serves. Whoever postprocesses (the
postprocess service, the split gateway) keeps one `Postprocessor` per list of class names that
inference reports (`PostprocessorsByClasses`): a new version may name its classes differently.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from servinglab.contract import model_summary
from servinglab.model.artifact import Artifact, load_artifact, sibling_version
from servinglab.model.pipeline import DEFAULT_CONFIDENCE_THRESHOLD, Postprocessor, Preprocessor

# Two versions are live during a rollout; a few more cover a quick rollback.
KEPT_VERSIONS = 4

Tag = TypeVar("Tag")


class VersionedPreprocessors(Generic[Tag]):
    """The preprocessor of the served version and of the last few other versions asked for.

    Each entry carries a tag of its model, made once from the model's summary when the version is
    loaded (the preprocess service's is the protobuf `ModelRef` it answers with), so a request
    costs one lookup.
    """

    def __init__(self, artifact: Artifact, tag: Callable[[dict], Tag]):
        self.served = artifact.path
        self.default_version = artifact.metadata["version"]
        self.tag = tag
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, tuple[Preprocessor, Tag]] = OrderedDict()
        self._add(artifact)

    def _add(self, artifact: Artifact) -> tuple[Preprocessor, Tag]:
        entry = (
            Preprocessor(artifact.estimator.named_steps["preprocess"]),
            self.tag(model_summary(artifact.metadata)),
        )
        self._loaded[artifact.metadata["version"]] = entry
        while len(self._loaded) > KEPT_VERSIONS:
            self._loaded.popitem(last=False)
        return entry

    def get(self, version: str) -> tuple[Preprocessor, Tag]:
        """(preprocessor, tag) of `version` ("" = the served one); ArtifactError if there is none."""
        version = version or self.default_version
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
            # Loading verifies the checksum, as at start-up; a rare event (once per rollout).
            return self._add(load_artifact(sibling_version(self.served, version)))


class PostprocessorsByClasses:
    """One `Postprocessor` per tuple of class names, made on first use, all with one threshold."""

    def __init__(self, confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD):
        self.confidence_threshold = confidence_threshold
        self._by_classes: dict[tuple[str, ...], Postprocessor] = {}

    def get(self, classes: tuple[str, ...]) -> Postprocessor:
        postprocessor = self._by_classes.get(classes)
        if postprocessor is None:
            postprocessor = self._by_classes[classes] = Postprocessor(
                classes, self.confidence_threshold
            )
        return postprocessor
