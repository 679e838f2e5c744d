"""Reading a stack file's YAML: bounded and strict, so bad input is one clear error, found before anything runs.

- **Bounded.** A file is read up to :data:`MAX_BYTES`; its document may hold at most :data:`MAX_VALUES` values
  counted with every YAML alias expanded. Aliases share one object when loaded, so a few lines of ``&a``/``*a``
  (a "billion laughs") are cheap to load but explode in anything that walks or prints the values: the count is
  taken on the composed node graph, before any value is built.
- **Strict.** A key given twice in one mapping is refused, naming the key and both lines (YAML loaders silently
  keep the last one, so a second ``dns_names:`` would quietly replace the first).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keyvault_acme.errors import SpecError

MAX_BYTES = 4 << 20  # a 100-certificate stack file is tens of kilobytes
MAX_VALUES = 50_000  # every scalar, list and mapping, aliases expanded; the largest real stacks hold a few thousand
_MERGE = "tag:yaml.org,2002:merge"


class _TooLarge(Exception):
    pass


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, again: int) -> None:
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


# libyaml's parser when PyYAML has it (its wheels do): a 1,000-certificate stack file composes in a tenth of the
# time of the pure-Python one, which was half of `status`'s CPU. Construction stays SafeConstructor's, in Python.
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """SafeLoader that refuses documents too large once aliases are expanded, and duplicate mapping keys."""

    def get_single_node(self) -> Any:
        # Both parsers compose the whole node graph here (libyaml's in C), aliases as shared nodes: counted
        # before any value is built.
        node = super().get_single_node()
        if node is not None:
            _count_values(node, MAX_VALUES)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise _DuplicateKey(key_node.value, seen[key_node.value], line)
            seen[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


def _count_values(root: yaml.Node, limit: int) -> int:
    """How many values ``root`` stands for with aliases expanded; _TooLarge past ``limit`` (or on a cycle)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:  # an alias inside its own anchor: infinitely large
            raise _TooLarge
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                raise _TooLarge
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``, or SpecError naming the file, what is wrong and the fix."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpecError(str(path), f"cannot be read ({e.strerror})", "check the stack name and stacks/ directory") from None
    if len(data) > MAX_BYTES:
        raise SpecError(str(path), f"is larger than {MAX_BYTES >> 20} MiB, far more than any stack file",
                        "check that --config names the stack file")
    try:
        return yaml.load(data.decode("utf-8"), Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except UnicodeDecodeError:
        raise SpecError(str(path), "is not UTF-8 text", "save the stack file as UTF-8") from None
    except _TooLarge:
        raise SpecError(str(path), f"holds more than {MAX_VALUES} values once its YAML aliases (*name) are expanded",
                        "write the values out instead of nesting aliases; a stack file needs few, if any") from None
    except _DuplicateKey as e:
        key = e.key if len(e.key) <= 80 else e.key[:80] + "..."
        raise SpecError(f"{path}: {key}", f"is given twice in one mapping (lines {e.first} and {e.again}); YAML "
                        "would silently keep only the last", "remove one of them, or merge their values") from None
    except yaml.YAMLError as e:
        raise SpecError(str(path), f"is not valid YAML ({_first_line(e)})", "fix the stack file's syntax") from None


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:300] + "..."
