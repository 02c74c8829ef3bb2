"""Import structure of podnet: function-local imports and import cycles between modules.

The issue-15 figures: how many imports hide inside functions (they hide the layering), and
how many cycles the module-level import graph has (goal 0). Counts `import`/`from … import`
statements below module level (TYPE_CHECKING blocks are module level, and not counted as
edges of the runtime graph). Cycles are strongly connected components of more than one module
in the graph of all imports, local ones included (a local import is still a dependency).

    python bench/imports.py [--list]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(mod: str, node: ast.ImportFrom | ast.Import, is_package: bool, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        pkg = mod.split(".") if is_package else mod.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    # `from pkg import sub` names the submodule when there is one, else something in pkg
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def scan():
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    local: list[tuple[str, int, str]] = []

    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"

        def visit(node, in_function: bool, typing_only: bool):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = [t for t in resolve(mod, child, is_package, modules) if t in modules]
                    if in_function:
                        local.append((mod, child.lineno, ast.unparse(child)))
                    if not typing_only:
                        edges[mod].update(t for t in targets if t != mod)
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, True, typing_only)
                elif isinstance(child, ast.If) and is_type_checking(child):
                    visit(child, in_function, True)
                else:
                    visit(child, in_function, typing_only)

        visit(tree, False, False)
    return modules, edges, local


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def package_edges(edges):
    """The same graph between podnet's sub-packages (podnet.linux, podnet.proxy, …)."""
    def top(m):
        parts = m.split(".")
        return ".".join(parts[:2])
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        out.setdefault(top(a), set())
        for b in targets:
            if top(a) != top(b):
                out[top(a)].add(top(b))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list every local import and cycle")
    args = parser.parse_args()
    modules, edges, local = scan()
    module_cycles = cycles(edges)
    pkg_cycles = cycles(package_edges(edges))
    print(f"modules:                   {len(modules)}")
    print(f"function-local imports:    {len(local)} (of podnet's own modules: "
          f"{sum(1 for _, _, s in local if 'podnet' in s or s.startswith('from .'))})")
    print(f"module import cycles:      {len(module_cycles)} "
          f"({sum(len(c) for c in module_cycles)} modules in them)")
    print(f"package import cycles:     {len(pkg_cycles)}")
    if args.list:
        for mod, line, stmt in local:
            print(f"  local {mod}:{line}: {stmt}")
        for c in module_cycles:
            print("  module cycle:", " ".join(c))
        for c in pkg_cycles:
            print("  package cycle:", " ".join(c))


if __name__ == "__main__":
    main()
