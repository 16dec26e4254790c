"""Every `artgan.x.y` a docstring or comment of the package names exists: a module (file or
package) of the tree, or a name one defines at its top level, so a rename or a move cannot
leave readers pointed at a module that is gone."""

import ast
import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "artgan"
#: A dotted name starting at the package (not `x.artgan.y`, nor a file such as `artgan.json`).
REFERENCE = re.compile(r"(?<![\w./-])artgan(?:\.[A-Za-z_]\w*)+")
FILE_SUFFIXES = ("json", "yaml", "md", "py", "csv", "txt")
#: Docstrings their owner rewrites in the same change (issue 21, items 1-2: the builder's
#: docstring names `artgan.spec`, `artgan.backbones`, `artgan.embeddings`); empty after it.


def prose(source):
    """(line, text) of every comment and string literal (docstrings included) of `source`."""
    return [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type in (tokenize.COMMENT, tokenize.STRING)
    ]


def module_file(root, parts):
    """The file of module `artgan.<parts>` under `root` (the package folder), or None."""
    path = root.joinpath(*parts)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def defined_names(body, prefix=""):
    """Names a module body defines or imports, and each class's own (`Class.name`)."""
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(prefix + node.name)
            if isinstance(node, ast.ClassDef):
                names |= defined_names(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {prefix + t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {prefix + (a.asname or a.name).split(".")[0] for a in node.names}
    return names


def resolves(reference, root=PACKAGE):
    """`artgan.a.b.C` names a module of the tree, or a module then a name it defines."""
    parts = reference.split(".")[1:]
    for split in range(len(parts), -1, -1):
        path = module_file(root, parts[:split]) if split else root / "__init__.py"
        if path is not None and path.is_file():
            rest = ".".join(parts[split:])
            return not rest or rest in defined_names(ast.parse(path.read_text()).body)
    return False


def dangling_references(root=PACKAGE):
    bad = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        for line, text in prose(path.read_text()):
            for match in REFERENCE.finditer(text):
                if match.group(0).rsplit(".", 1)[1] in FILE_SUFFIXES:
                    continue
                if not resolves(match.group(0), root):
                    at = line + text[: match.start()].count("\n")
                    bad.append(f"{name}:{at} names {match.group(0)}, which does not exist")
    return bad


def test_every_artgan_reference_in_docstrings_and_comments_exists():
    assert dangling_references() == []


def test_a_reference_to_a_moved_module_is_caught(tmp_path):
    (tmp_path / "artgan" / "model").mkdir(parents=True)
    (tmp_path / "artgan" / "__init__.py").write_text("")
    (tmp_path / "artgan" / "model" / "__init__.py").write_text("")
    (tmp_path / "artgan" / "model" / "crnn.py").write_text(
        '"""Layers named in `artgan.model.crnn.LAYERS`; see `artgan.model.crnn.build`,\n'
        'its metadata (`artgan.json`) and `artgan.model.crnn.Head.size`."""\n'
        "LAYERS = ()\n\n\n"
        "class Head:\n"
        "    size = 3\n\n\n"
        "def build():  # the flat name artgan.models.crnn is gone\n"
        '    """Reads `artgan.model.crnn.LAYERS` and\n'
        '    `artgan.model.crnn.missing`."""\n'
    )
    found = dangling_references(tmp_path / "artgan")
    assert found == [
        "artgan/model/crnn.py:10 names artgan.models.crnn, which does not exist",
        "artgan/model/crnn.py:12 names artgan.model.crnn.missing, which does not exist",
    ]
