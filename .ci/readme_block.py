"""Print the N-th fenced ``bash``/``shell`` block of a Markdown file (1-based)."""

import re
import sys

path, index = sys.argv[1], int(sys.argv[2])
with open(path, encoding="utf-8") as f:
    blocks = re.findall(r"^```(?:bash|shell|sh)\n(.*?)^```", f.read(), re.S | re.M)
if len(blocks) < index:
    sys.exit(f"{path} has {len(blocks)} shell blocks; block {index} was asked for")
print(blocks[index - 1].strip())
