"""Print the fenced shell block that follows a ``<!-- ci: NAME -->`` marker in a Markdown file.

Usage: ``python .ci/readme_block.py README.md [NAME]`` (NAME defaults to ``tests``).

CI runs the command the README shows, found by its marker rather than by its position, so
reordering or adding blocks cannot silently change what CI runs. Exits non-zero, saying why,
when the marker is missing, appears twice, or is not followed (blank lines aside) by a fenced
``bash``/``shell``/``sh`` block.
"""

from __future__ import annotations

import re
import sys

FENCE = re.compile(r"```(?:bash|shell|sh)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def find_block(text: str, name: str = "tests") -> str:
    """Return the shell block right after ``<!-- ci: NAME -->`` in ``text``.

    Raises:
        ValueError: the marker is missing or repeated, or no shell block follows it.

    >>> find_block("intro\\n<!-- ci: tests -->\\n\\n```bash\\npython -m pytest\\n```\\n")
    'python -m pytest'
    """
    marker = re.compile(rf"^[ \t]*<!--\s*ci:\s*{re.escape(name)}\s*-->[ \t]*\n", re.M)
    hits = list(marker.finditer(text))
    if not hits:
        raise ValueError(f"no '<!-- ci: {name} -->' marker")
    if len(hits) > 1:
        raise ValueError(f"'<!-- ci: {name} -->' appears {len(hits)} times; it must mark one block")
    rest = text[hits[0].end() :].lstrip("\n")
    block = FENCE.match(rest)
    if block is None:
        raise ValueError(f"'<!-- ci: {name} -->' is not followed by a fenced bash/shell/sh block")
    command = block.group(1).strip()
    if not command:
        raise ValueError(f"the block after '<!-- ci: {name} -->' is empty")
    return command


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: readme_block.py FILE.md [NAME]", file=sys.stderr)
        return 2
    path, name = argv[1], argv[2] if len(argv) == 3 else "tests"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        print(find_block(text, name))
    except ValueError as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
