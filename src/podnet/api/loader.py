"""Reading manifests: files, directories, stdin; multi-document YAML, JSON, and `kind: List`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

import yaml

from podnet.api.objects import Source
from podnet.errors import InvalidInput



class _ManifestLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The fast C loader, but timestamps stay strings: the API's JSON has no dates; and a key
    that YAML reads as a number or a boolean (`8080:` in a map of ports) is the string JSON
    gives it, as kubectl's YAML-to-JSON conversion does."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        if all(type(key) is str for key in mapping):
            return mapping
        return {_json_key(key): value for key, value in mapping.items()}


def _json_key(key) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return key if isinstance(key, str) else str(key)


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader = _ManifestLoader
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class RawManifest:
    """One object as read, before any validation."""

    body: Any
    source: Source


@dataclass
class LoadedFiles:
    manifests: list[RawManifest] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # for line lookup on error
    problems: list[str] = field(default_factory=list)  # "FILE:LINE: what is wrong"


def expand_paths(args: Iterable[str]) -> list[str]:
    """-f arguments to files in a stable order: directories recursively, "-" for stdin."""
    files: list[str] = []
    for arg in args:
        if arg == "-":
            files.append("-")
            continue
        path = Path(arg)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
            )
            if not found:
                raise InvalidInput([f"{arg}: no .yaml, .yml or .json files in this directory"])
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise InvalidInput([f"{arg}: no such file or directory"])
    return files


def load_files(args: Iterable[str], stdin: TextIO | None = None) -> LoadedFiles:
    loaded = LoadedFiles()
    for name, text in _read(args, stdin, loaded):
        _parse_text(name, text, loaded)
    return loaded


def read_files(args: Iterable[str], stdin: TextIO | None = None) -> LoadedFiles:
    """The files' texts, not parsed yet (`podnet apply` hands them to the running cluster,
    which admits them: see parse_texts); what could not be read is in `problems`."""
    loaded = LoadedFiles()
    for _ in _read(args, stdin, loaded):
        pass
    return loaded


def parse_texts(texts: dict[str, str]) -> LoadedFiles:
    """Texts read elsewhere (by name: a file's path, <stdin>) parsed, as load_files would."""
    loaded = LoadedFiles()
    for name, text in texts.items():
        loaded.texts[name] = text
        _parse_text(name, text, loaded)
    return loaded


def _read(args: Iterable[str], stdin: TextIO | None, loaded: LoadedFiles) -> Iterator[tuple[str, str]]:
    """Each file's (name, text), also kept in loaded.texts; what cannot be read goes to
    loaded.problems."""
    for file in expand_paths(args):
        if file == "-":
            name = "<stdin>"
            try:
                text = _read_stdin(stdin)
            except UnicodeDecodeError as exc:
                loaded.problems.append(f"<stdin>: cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
        else:
            name = file
            try:
                text = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                loaded.problems.append(f"{file}: cannot read: {exc}")
                continue
        loaded.texts[name] = text
        yield name, text


def _read_stdin(stdin: TextIO | None) -> str:
    stream = stdin or sys.stdin
    raw = getattr(stream, "buffer", None)
    return raw.read().decode("utf-8") if raw is not None else stream.read()


def _parse_text(name: str, text: str, loaded: LoadedFiles) -> None:
    try:
        if name.lower().endswith(".json"):
            documents = _json_stream(text)
        else:  # YAML, which also reads JSON (stdin may be either)
            documents = list(yaml.load_all(text, Loader=_Loader))
    except json.JSONDecodeError as exc:
        loaded.problems.append(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}")
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        loaded.problems.append(f"{name}{line}: invalid YAML: {what}")
        return
    for index, document in enumerate(documents):
        if document is None:  # empty document, e.g. a trailing "---"
            continue
        source = Source(name, index)
        if isinstance(document, dict) and _is_list(document):
            items = document.get("items") or []
            if not isinstance(items, list):
                loaded.problems.append(f"{name}: document {index + 1}: items: must be a list")
                continue
            for item_index, item in enumerate(items):
                loaded.manifests.append(RawManifest(item, Source(name, index, item_index)))
        else:
            loaded.manifests.append(RawManifest(document, source))


def _json_stream(text: str) -> list:
    """One or more JSON values one after another, as kubectl accepts in a .json file."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return documents
        value, index = decoder.raw_decode(text, index)
        documents.append(value)


def _is_list(document: dict) -> bool:
    """`kind: List` as `kubectl get -o yaml` prints it (and typed lists such as PodList)."""
    kind = document.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in document
