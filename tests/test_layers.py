"""The code's layers, as pyproject.toml's import-linter contracts state them, and where an
import may hide inside a function."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "podnet"

# Programs whose start-up time is the product: a CNI plugin runs once per pod (the runtime waits
# for it), agnhost's subcommands start in every test pod, `podnet` imports only the command that
# runs. Only there may an import wait inside a function, and only with a comment saying why.
START_UP_CRITICAL = ("cni", "agnhost", "naming.py", "cli/main.py", "output/table.py")


def test_the_import_contracts_hold():
    # a process of its own: import-linter configures logging (dictConfig), which would silence
    # the loggers of every later test in this one
    lint = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                           "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # this tree, not an installed one
    assert lint.returncode == 0, f"an import breaks a layer or makes a cycle:\n{lint.stdout}{lint.stderr}"


def function_local_imports() -> list[tuple[Path, int, str, bool]]:
    """(file, line, statement, has a reason) for every import inside a function in src/podnet."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    here, above = lines[inner.lineno - 1], lines[inner.lineno - 2].strip()
                    found.append((path, inner.lineno, here.strip(), "#" in here or above.startswith("#")))
    return found


def test_imports_inside_functions_only_where_start_up_time_needs_them():
    wrong = [f"{path.relative_to(ROOT)}:{line}: {text}" for path, line, text, _ in function_local_imports()
             if not str(path.relative_to(SRC)).startswith(START_UP_CRITICAL)]
    assert wrong == [], "move these imports to module level:\n" + "\n".join(wrong)


def test_each_deferred_import_says_why():
    silent = [f"{path.relative_to(ROOT)}:{line}: {text}" for path, line, text, reason in function_local_imports()
              if not reason]
    assert silent == [], "say in a comment why these imports wait:\n" + "\n".join(silent)
