"""The Chinese catalogue: every marked string translated, and the compiled file current."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PO = Path(__file__).resolve().parents[1] / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def entries() -> list[str]:
    # Obsolete entries (#~) are kept by makemessages for reuse; they are not shown.
    blocks = PO.read_text(encoding="utf-8").split("\n\n")
    return [block for block in blocks[1:] if not block.lstrip().startswith("#~")]


def test_every_string_is_translated_and_none_is_a_fuzzy_guess():
    untranslated = [
        block for block in entries() if re.search(r'\nmsgstr(\[0\])? ""\s*$', block.strip())
    ]
    fuzzy = [block for block in entries() if "#, fuzzy" in block]
    assert untranslated == []
    assert fuzzy == []
    assert len(entries()) > 300


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext tools not installed")
def test_the_compiled_catalogue_is_the_current_one(tmp_path):
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "-o", str(compiled), str(PO)], check=True)  # noqa: S603, S607
    assert compiled.read_bytes() == PO.with_suffix(".mo").read_bytes()
