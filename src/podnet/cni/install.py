"""Install podnet-cni into a CNI bin directory, as flannel's install-cni container does.

    python -m podnet.cni.install /opt/cni/bin        (then "type": "podnet-cni" in a conflist)

A runtime execs a plugin for every ADD and DEL, so its start-up is most of its cost. The
launcher written here runs the interpreter with -I -S (no site-packages, no PYTHON*
environment, which a runtime does not promise anyway) and puts podnet's own directory on the
path, and the package is byte-compiled once here, so no run compiles anything; it ends the
process as soon as the answer is written (main.main_and_exit), without the interpreter's
teardown. The console script `podnet-cni` that pip installs works too, about 3 ms slower
(site and the teardown; pip's script imports `re` as well).
"""

from __future__ import annotations

import compileall
import os
import sys

import podnet

NAME = "podnet-cni"


def launcher_text(python: str | None = None) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(podnet.__file__)))
    return (f"#!{python or sys.executable} -IS\n"
            f"# {NAME}: the CNI plugin, written by `python -m podnet.cni.install`\n"
            "import sys\n"
            f"sys.path.insert(0, {root!r})\n"
            "from podnet.cni.main import main_and_exit\n"
            "main_and_exit()\n")


def install(directory: str, python: str | None = None) -> str:
    """Write DIRECTORY/podnet-cni (atomically: a runtime may be exec'ing the old one) and
    byte-compile what a plugin run imports. Returns the path."""

    package = os.path.dirname(os.path.abspath(podnet.__file__))
    for sub in ("cni", ""):
        compileall.compile_dir(os.path.join(package, sub), maxlevels=0, quiet=1)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, NAME)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as out:
        out.write(launcher_text(python))
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(f"usage: python -m podnet.cni.install DIRECTORY   (writes DIRECTORY/{NAME})", file=sys.stderr)
        return 2
    print(install(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
