"""`.ci/readme_block.py`: CI finds the README's test command by its marker, never by position."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
SCRIPT = REPO / ".ci" / "readme_block.py"
TEST_COMMAND = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'

_spec = importlib.util.spec_from_file_location("readme_block", SCRIPT)
assert _spec is not None and _spec.loader is not None
readme_block = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_block)


def test_readme_marks_the_test_command():
    assert readme_block.find_block((REPO / "README.md").read_text(encoding="utf-8")) == TEST_COMMAND


def test_block_is_found_by_marker_not_position():
    text = "```bash\necho first\n```\n\n<!-- ci: tests -->\n\n```shell\necho second\n```\n\n```bash\necho third\n```\n"
    assert readme_block.find_block(text) == "echo second"
    assert readme_block.find_block(text.replace("ci: tests", "ci: main"), "main") == "echo second"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```bash\necho no marker\n```\n", "no '<!-- ci: tests -->' marker"),
        ("<!-- ci: tests -->\nSome prose first.\n\n```bash\necho x\n```\n", "not followed by a fenced"),
        ("<!-- ci: tests -->\n```python\nprint(1)\n```\n", "not followed by a fenced"),
        ("<!-- ci: tests -->\n", "not followed by a fenced"),
        ("<!-- ci: tests -->\n```bash\n\n```\n", "is empty"),
        ("<!-- ci: tests -->\n```bash\na\n```\n<!-- ci: tests -->\n```bash\nb\n```\n", "appears 2 times"),
    ],
)
def test_fails_loudly(text, message):
    with pytest.raises(ValueError, match=message):
        readme_block.find_block(text)


def test_command_line(tmp_path):
    ok = subprocess.run([sys.executable, str(SCRIPT), str(REPO / "README.md")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == TEST_COMMAND
    bad = tmp_path / "bad.md"
    bad.write_text("```bash\necho x\n```\n", encoding="utf-8")
    failed = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "marker" in failed.stderr


def test_docstring_examples():
    import doctest

    results = doctest.testmod(readme_block)
    assert results.attempted > 0
    assert results.failed == 0
