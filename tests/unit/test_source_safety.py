"""Fails on any unsafe deserialisation call anywhere in the shipped code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*ROOT.glob("service/**/*.py"), *ROOT.glob("registry_db/**/*.py"), *ROOT.glob("plugins/*/src/**/*.py")]
RULES = {
    "pickle.load/loads": re.compile(r"\bpickle\.loads?\("),
    "yaml.load without SafeLoader": re.compile(r"\byaml\.load\((?![^)]*SafeLoader)"),
    "torch.load without weights_only=True": re.compile(r"\btorch\.load\((?![^\n]*weights_only\s*=\s*True)"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "unsafe numpy load": re.compile(r"\bnp\.load\((?![^)]*allow_pickle\s*=\s*False)"),
}


def test_sources_found() -> None:
    assert len(SOURCES) > 20


def test_no_unsafe_deserialisation() -> None:
    offences = []
    for path in SOURCES:
        text = path.read_text()
        for rule, pattern in RULES.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                offences.append(f"{path.relative_to(ROOT)}:{line}: {rule}")
    assert not offences, "\n".join(offences)


def test_rules_catch_what_they_should() -> None:
    assert RULES["torch.load without weights_only=True"].search("torch.load(path)")
    assert not RULES["torch.load without weights_only=True"].search("torch.load(str(path), weights_only=True)")
    assert RULES["pickle.load/loads"].search("pickle.loads(body)")
    assert RULES["yaml.load without SafeLoader"].search("yaml.load(text)")
    assert not RULES["yaml.load without SafeLoader"].search("yaml.load(text, Loader=yaml.SafeLoader)")


def _imported_modules(text: str) -> list[tuple[int, str]]:
    import ast

    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def test_the_core_never_imports_a_plugin_package() -> None:
    core = [*ROOT.glob("service/**/*.py"), *ROOT.glob("registry_db/**/*.py")]
    offences = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in core
        for line, module in _imported_modules(path.read_text())
        if module.split(".", 1)[0].startswith("modelport_")
    ]
    assert not offences, "the core imports plugins (find them through entry points):\n" + "\n".join(offences)
    assert _imported_modules("from modelport_zoo.demo import run_demo\nimport os") == [
        (1, "modelport_zoo.demo"),
        (2, "os"),
    ]
