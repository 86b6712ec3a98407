"""`make install` without setuptools' BuildBackendWarning walls (issue 18, defect 11).

The license as an SPDX string (not the deprecated TOML table) and the Makefile's filter for the editable-install
notice; checked by reading the files, since a real install takes minutes and the network-free index is per machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_string_and_setuptools_supports_it():
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(doc["project"]["license"], str)  # a table makes setuptools >= 77 print a deprecation wall
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in doc["build-system"]["requires"])


def test_makefile_silences_only_the_editable_install_notice():
    makefile = (ROOT / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "pip install" in line and "-e " in line
                and not line.startswith("#"))
    assert 'PYTHONWARNINGS="ignore:Editable installation"' in line
