"""The docs' schema pages say only what the build had: recordings, and kept new fields.

``docs/hooks.py`` is loaded by path, as mkdocs loads it, and its hooks are
called with a config pointing at a directory of our choosing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from jobmon_gateway import HeartbeatResponse

REPO = Path(__file__).resolve().parents[1]
INDEX = (REPO / "docs" / "schemas" / "index.md").read_text(encoding="utf-8")
HEARTBEAT = Path(__file__).resolve().parent / "wire" / "jobmon-server-3.2.2"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name, as for any imported module.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _index_page(hooks: ModuleType, repo: Path) -> str:
    config = SimpleNamespace(config_file_path=str(repo / "mkdocs.yml"))
    page: str = hooks.on_page_markdown(INDEX, page=None, config=config, files=None)
    return page


def test_a_build_without_recordings_does_not_claim_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBMON_WIRE_DIR", raising=False)
    repo = tmp_path / "repo"  # no ../shared/wire beside it
    repo.mkdir()
    page = _index_page(_hooks(), repo)
    assert "built without recorded answers" in page
    assert "recorded answers, from" not in page
    assert "<!-- recordings -->" not in page


def test_a_build_with_recordings_counts_them_and_names_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = tmp_path / "wire" / "jobmon-server-3.2.2"
    wire.mkdir(parents=True)
    recorded = [
        path
        for path in sorted(HEARTBEAT.glob("*.json"))
        if 200 <= json.loads(path.read_text(encoding="utf-8"))["status"] < 300
    ]
    assert recorded, "tests/wire holds no 2xx recording"
    shutil.copy(recorded[0], wire)
    monkeypatch.setenv("JOBMON_WIRE_DIR", str(tmp_path / "wire"))
    page = _index_page(_hooks(), tmp_path / "repo")
    server = json.loads(recorded[0].read_text(encoding="utf-8"))["server"]
    assert f"built with 1 recorded answer, from Jobmon servers `{server}`" in page
    assert "without recorded answers" not in page


def test_every_schema_page_says_new_fields_are_kept_in_model_extra() -> None:
    hooks = _hooks()
    page: str = hooks._model_page(HeartbeatResponse, [])
    assert "| any other | any JSON value | no |" in page
    assert "`model_extra`" in page
