"""Image tags of lab.images: the commit for a clean tree, a new tag for each different dirty one.

A bare `<sha>-dirty` for every uncommitted build would give two different builds one name, and
Kubernetes (imagePullPolicy IfNotPresent) would keep running the first. These tests run
`lab.images.git_tag` against a throw-away git repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from lab import images


@pytest.fixture
def repo(tmp_path, monkeypatch):
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("ignored/\n")
    (tmp_path / "app.py").write_text("print('v1')\n")
    git("add", ".gitignore", "app.py")
    git("commit", "-q", "-m", "one")
    monkeypatch.setattr(images, "ROOT", tmp_path)
    return tmp_path, git


def test_a_clean_tree_is_tagged_with_its_commit(repo):
    _, git = repo
    sha = git("rev-parse", f"--short={images.SHA_LENGTH}", "HEAD").strip()
    assert images.git_tag() == sha


def test_each_different_dirty_tree_gets_its_own_tag_and_the_same_tree_the_same_tag(repo):
    root, git = repo
    sha = git("rev-parse", f"--short={images.SHA_LENGTH}", "HEAD").strip()
    (root / "app.py").write_text("print('v2')\n")
    first = images.git_tag()
    assert re.fullmatch(rf"{sha}-dirty-[0-9a-f]{{{images.DIRTY_HASH_LENGTH}}}", first)
    (root / "app.py").write_text("print('v3')\n")
    second = images.git_tag()
    assert second != first, "a second build of a dirty tree must not reuse the first one's tag"
    (root / "app.py").write_text("print('v2')\n")
    assert images.git_tag() == first, "the tag is a hash of the content, not of the time"
    git("add", "app.py")  # staging changes nothing about what would be built
    assert images.git_tag() == first


def test_untracked_files_count_and_ignored_ones_do_not(repo):
    root, _ = repo
    (root / "app.py").write_text("print('v2')\n")
    base = images.git_tag()
    (root / "ignored").mkdir()
    (root / "ignored" / "scratch.txt").write_text("not part of the build\n")
    assert images.git_tag() == base
    (root / "new_module.py").write_text("X = 1\n")
    with_new = images.git_tag()
    assert with_new != base
    (root / "new_module.py").write_text("X = 2\n")
    assert images.git_tag() not in (base, with_new), "an untracked file's content counts too"


def test_a_tag_is_a_valid_docker_tag_and_label_value(repo):
    root, _ = repo
    (root / "app.py").write_text("print('v2')\n")
    tag = images.git_tag()
    # Docker: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; a Kubernetes label value
    # (app.kubernetes.io/version, set by scripts/kind.sh to this tag): at most 63 characters,
    # alphanumeric at both ends.
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,61}[A-Za-z0-9]", tag)
    assert images.image_ref() == f"{images.IMAGE_NAME}:{tag}"
