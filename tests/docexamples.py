"""Run the library examples of docs/preprocessing.md as they are written, pointed at a corpus tree of the tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rich.console import Console

DOC = Path(__file__).resolve().parents[1] / "docs" / "preprocessing.md"
QUIET = Console(file=open(os.devnull, "w"))


def example(function: str) -> str:
    """The one ```python block of docs/preprocessing.md that calls ``function``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if f"{function}(" in b]
    assert len(blocks) == 1, f"{DOC.name}: {len(blocks)} python blocks call {function}()"
    return blocks[0]


def run_example(function: str, corpus_in_doc: str, corpus: Path, cwd: Path, monkeypatch, **forced) -> dict:
    """Run the example that calls ``function`` as a script (``__name__ == "__main__"``) in ``cwd``, where its output
    folder lands, with the corpus path it names (``corpus_in_doc``) replaced by ``corpus``; every PrepOptions it
    makes gets a quiet console, no bar and ``forced`` (fewer clips, fewer jobs). Returns the script's variables."""
    import avprep
    from avprep.options import PrepOptions

    code = example(function)
    assert f'"{corpus_in_doc}"' in code, f"the {function}() example does not name {corpus_in_doc}"
    code = code.replace(f'"{corpus_in_doc}"', repr(str(corpus)))
    settings = {"console": QUIET, "progress": False, **forced}
    monkeypatch.setattr(avprep, "PrepOptions", lambda **given: PrepOptions(**{**given, **settings}))
    monkeypatch.chdir(cwd)
    variables = {"__name__": "__main__"}
    exec(compile(code, f"{DOC.name}: the {function}() example", "exec"), variables)
    return variables
