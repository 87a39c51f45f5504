"""The public API: `import outfitrec` is light, and docs/python-api.md's example runs on the tiny dataset."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import outfitrec

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_import_is_light_and_names_resolve():
    code = "import sys, outfitrec; assert 'torch' not in sys.modules; print(len(outfitrec.__all__))"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in outfitrec.__all__[1:]:
        assert getattr(outfitrec, name).__doc__, name


def test_the_documented_example_runs(tiny_data_dir, tmp_path, capsys):
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    exec(compile(block, str(DOC), "exec"), {"DATA": str(tiny_data_dir), "RUN": str(tmp_path / "run")})
    out = capsys.readouterr().out
    assert "test AUC" in out and "EASE" in out and len(re.findall(r"^\(\d+, \d+, \d+\) ", out, re.M)) == 3
