"""Fails on any unsafe deserialisation call in the shipped code (service/, registry_db/, plugins/*/src).

The scan reads the syntax tree, not the text: aliases (``import pickle as p``, ``from pickle import loads``),
calls split over several lines, and nested parentheses cannot hide a call, and comments or strings that
mention ``pickle.load(`` do not trip it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOURCES = sorted(
    [*ROOT.glob("service/**/*.py"), *ROOT.glob("registry_db/**/*.py"), *ROOT.glob("plugins/*/src/**/*.py")]
)

_ALWAYS_UNSAFE = {
    "pickle.load": "pickle.load runs code from the bytes",
    "pickle.loads": "pickle.loads runs code from the bytes",
    "pickle.Unpickler": "an unrestricted Unpickler runs code from the bytes",
    "_pickle.load": "pickle.load runs code from the bytes",
    "_pickle.loads": "pickle.loads runs code from the bytes",
    "cPickle.loads": "pickle.loads runs code from the bytes",
    "dill.load": "dill.load runs code from the bytes",
    "dill.loads": "dill.loads runs code from the bytes",
    "joblib.load": "joblib.load unpickles",
    "marshal.loads": "marshal.loads builds code objects",
    "shelve.open": "shelve unpickles",
    "yaml.unsafe_load": "yaml.unsafe_load builds arbitrary objects",
    "yaml.full_load": "yaml.full_load builds Python objects",
    "torch.serialization.load": "use torch.load(..., weights_only=True)",
}
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _qualified_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> the module path it stands for (``p`` -> ``pickle``, ``loads`` -> ``pickle.loads``)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(names.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def _yaml_loader_is_safe(call: ast.Call) -> bool:
    candidates = [k.value for k in call.keywords if k.arg == "Loader"] + list(call.args[1:2])
    return any(
        (isinstance(c, ast.Attribute) and c.attr in _SAFE_YAML_LOADERS)
        or (isinstance(c, ast.Name) and c.id in _SAFE_YAML_LOADERS)
        for c in candidates
    )


def offences_in(source: str, label: str = "<string>") -> list[str]:
    """Every unsafe deserialisation call in ``source`` as ``label:line: reason``."""
    tree = ast.parse(source)
    names = _qualified_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _dotted(node.func, names)
        if target is None:
            continue
        reason = _ALWAYS_UNSAFE.get(target)
        if target == "torch.load" and not _keyword_is(node, "weights_only", True):
            reason = "torch.load without weights_only=True"
        elif target == "yaml.load" and not _yaml_loader_is_safe(node):
            reason = "yaml.load without a SafeLoader"
        elif target in ("numpy.load", "np.load") and _keyword_is(node, "allow_pickle", True):
            reason = "numpy.load with allow_pickle=True"
        elif target in ("eval", "exec", "builtins.eval", "builtins.exec"):
            reason = f"{target}() runs code"
        if reason:
            found.append(f"{label}:{node.lineno}: {reason}")
    return found


def test_the_scan_covers_the_shipped_code() -> None:
    labels = {str(path.relative_to(ROOT)) for path in SOURCES}
    assert "service/security/artifact_guard.py" in labels
    assert any(label.startswith("plugins/modelport-torch/src/") for label in labels)
    assert len(SOURCES) > 20


def test_no_unsafe_deserialisation_in_shipped_code() -> None:
    offences = [o for path in SOURCES for o in offences_in(path.read_text(), str(path.relative_to(ROOT)))]
    assert not offences, "unsafe deserialisation:\n" + "\n".join(offences)


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\npickle.loads(body)",
        "import pickle as p\np.load(fh)",
        "from pickle import loads\nloads(body)",
        "from pickle import loads as l\nl(body)",
        "import torch\ntorch.load(path)",
        "import torch\ntorch.load(str(path), map_location='cpu')",
        "import torch\ntorch.load(\n    str(path),\n    weights_only=False,\n)",
        "import torch as t\nt.load(path, weights_only=flag)",
        "from torch import load\nload(path)",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.FullLoader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import numpy as np\nnp.load(path, allow_pickle=True)",
        "import joblib\njoblib.load(path)",
        "eval(expression)",
    ],
)
def test_the_rules_catch_unsafe_calls(snippet: str) -> None:
    assert offences_in(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load(str(path), map_location='cpu', weights_only=True)",
        "import torch\ntorch.load(\n    path,\n    weights_only=True,\n    mmap=True,\n)",
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nyaml.safe_load(text)",
        "import numpy as np\nnp.load(path)",
        "import pickle\npickle.dumps(obj)",
        "# pickle.loads(body) in a comment\nx = 'torch.load(path)'",
        "import json\njson.loads(text)",
        "model.eval()",
    ],
)
def test_the_rules_leave_safe_calls_alone(snippet: str) -> None:
    assert not offences_in(snippet), snippet
