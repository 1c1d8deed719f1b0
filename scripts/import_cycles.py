#!/usr/bin/env python3
"""Fail when a Rust crate's modules import each other in a circle.

    scripts/import_cycles.py CRATE_SRC_DIR...     e.g. server/src loadgen/src
    scripts/import_cycles.py --self-test          checks this checker on small made-up crates

Layers import downward only: at every level of a crate's module tree, the modules that share a
parent (the files of one folder, the folders of the crate) must form a graph without a circle.
A module that names an item of another module (`use crate::a::b::Thing`, `super::x::f()`,
`crate::a::CONST` in code) depends on it; the dependency counts between the two siblings that
contain them (the files themselves, or their folders). A parent and its children are left out:
a folder's mod.rs re-exports its children and the children use what their parent holds.

Paths are followed through `pub use` re-exports (`crate::Subscriber` counts as a use of the
module that defines it, not of lib.rs), so a re-export cannot hide a circle. Comments and string
literals are ignored; inline modules (`mod tests { .. }`) count as part of their file.

Prints each circle with one reference per step (file:line) and exits 1; prints a one-line
summary and exits 0 when there is none. `--graph` also prints every sibling dependency.
"""

import argparse
import bisect
import os
import re
import sys
import tempfile
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
MOD_DECL = re.compile(r"^\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])")
USE_STMT = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);", re.S)
PATH = re.compile(r"(?<![A-Za-z0-9_:])((?:crate|super|self)(?:\s*::\s*" + IDENT + r")+)")
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]')


def strip_comments_and_strings(text):
    """The text with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            end = text.find('"' + "#" * hashes, i + 2 + hashes)
            end = n if end < 0 else end + 1 + hashes
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a).
            m = re.match(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> [['a','b'], ['a','c','d'], ['a','c']] (aliases dropped; a
    glob keeps its prefix and a '*')."""
    tokens = re.findall(r"::|[{}*,]|" + IDENT, tree)

    def parse(pos, prefix):
        """One tree from tokens[pos]; returns (paths, next position)."""
        segs = list(prefix)
        while pos < len(tokens):
            token = tokens[pos]
            if token == "{":
                paths, pos = [], pos + 1
                while pos < len(tokens) and tokens[pos] != "}":
                    sub, pos = parse(pos, segs)
                    paths.extend(sub)
                    if pos < len(tokens) and tokens[pos] == ",":
                        pos += 1
                return paths, pos + 1
            if token == "*":
                return [segs + ["*"]], pos + 1
            pos += 1
            if not (token == "self" and prefix and segs == list(prefix)):
                segs.append(token)  # `{self, ..}` names the prefix itself
            if pos < len(tokens) and tokens[pos] == "::":
                pos += 1
                continue
            if pos < len(tokens) and tokens[pos] == "as":
                pos += 2
            break
        return [segs], pos

    paths, _ = parse(0, [])
    return [p for p in paths if p]


class Module:
    def __init__(self, path, file):
        self.path = path          # tuple of names from the crate root
        self.file = file          # its file
        self.children = {}        # name -> Module (file modules only)
        self.reexports = {}       # name -> absolute path (list) it re-exports
        self.refs = []            # (absolute path segments, line, file)


def module_file(directory, name):
    for candidate in (os.path.join(directory, name + ".rs"), os.path.join(directory, name, "mod.rs")):
        if os.path.isfile(candidate):
            return candidate
    return None


def load_crate(root_file):
    """Module tree of the crate whose root is `root_file`, with every file's references."""
    root = Module((), root_file)
    stack = [root]
    while stack:
        module = stack.pop()
        with open(module.file, encoding="utf-8") as f:
            raw = f.read()
        text = strip_comments_and_strings(raw)
        if module.path == () or os.path.basename(module.file) == "mod.rs":
            child_dir = os.path.dirname(module.file)
        else:
            child_dir = os.path.splitext(module.file)[0]
        scan_file(module, text, raw, child_dir, stack)
    return root


def scan_file(module, text, raw, child_dir, stack):
    """Reads a file's module declarations, re-exports and references (inline modules
    included: their `super`/`self` resolve inside them, their references count for the file)."""
    lines = text.split("\n")
    raw_lines = raw.split("\n")
    scopes = []  # per line: the inline modules open there, outermost first
    line_starts = []
    inline = []  # (name, brace depth it was opened at)
    depth = offset = 0
    for number, line in enumerate(lines, 1):
        scopes.append(tuple(name for name, _ in inline))
        line_starts.append(offset)
        offset += len(line) + 1
        decl = MOD_DECL.match(line)
        if decl and decl.group(2) == ";" and not inline:
            name = decl.group(1)
            attr = PATH_ATTR.search(raw_lines[number - 1])
            if not attr and number >= 2:
                attr = PATH_ATTR.search(raw_lines[number - 2])
            if attr:
                path = os.path.join(os.path.dirname(module.file), attr.group(1))
            else:
                path = module_file(child_dir, name)
            if path:
                child = Module(module.path + (name,), path)
                module.children[name] = child
                stack.append(child)
        elif decl and decl.group(2) == "{":
            inline.append((decl.group(1), depth))
        depth += line.count("{") - line.count("}")
        while inline and depth <= inline[-1][1]:
            inline.pop()

    def here(pos):
        """(line number, inline-module scope) of a position in the text."""
        line = bisect.bisect_right(line_starts, pos)
        return line, scopes[line - 1]

    for m in USE_STMT.finditer(text):
        line, scope = here(m.start())
        public = m.group(1) is not None and "super" not in m.group(1)
        for segs in expand_use_tree(m.group(2)):
            absolute = resolve_relative(module.path + scope, segs, module)
            if absolute is None:
                continue
            module.refs.append((absolute, line, module.file))
            if public and not scope and segs[-1] != "*":
                module.reexports[segs[-1]] = absolute
    # Paths in code (and again those of use statements: counting a reference twice is harmless).
    for m in PATH.finditer(text):
        line, scope = here(m.start())
        segs = re.sub(r"\s+", "", m.group(1)).split("::")
        absolute = resolve_relative(module.path + scope, segs, module)
        if absolute is not None:
            module.refs.append((absolute, line, module.file))


def resolve_relative(scope, segs, module):
    """Absolute path of `segs` written in module `scope`; None for an external crate."""
    segs = list(segs)
    if not segs:
        return None
    if segs[0] == "crate":
        return segs[1:]
    base = list(scope)
    if segs[0] in ("self", "super"):
        while segs and segs[0] in ("self", "super"):
            if segs.pop(0) == "super":
                if not base:
                    return None
                base.pop()
        return base + segs
    # A 2018-style relative path: a child module of the current file module.
    if len(scope) == len(module.path) and segs[0] in module.children:
        return base + segs
    return None


def target_module(root, path, seen=None):
    """The module that defines what `path` names, following re-exports."""
    seen = seen or set()
    module = root
    for index, name in enumerate(path):
        if name in module.children:
            module = module.children[name]
            continue
        if name in module.reexports and (module.path, name) not in seen:
            seen.add((module.path, name))
            return target_module(root, module.reexports[name], seen)
        break
    return module


def all_modules(root):
    stack, out = [root], []
    while stack:
        module = stack.pop()
        out.append(module)
        stack.extend(module.children.values())
    return out


def sibling_edges(root):
    """{parent path: {(child a, child b): [(file, line, written path), ...]}}."""
    edges = defaultdict(lambda: defaultdict(list))
    for module in all_modules(root):
        for path, line, file in module.refs:
            target = target_module(root, path).path
            source = module.path
            common = 0
            while common < min(len(source), len(target)) and source[common] == target[common]:
                common += 1
            if common == len(source) or common == len(target):
                continue  # the same module, or an ancestor and its descendant
            parent = source[:common]
            edges[parent][(source[common], target[common])].append((file, line, "::".join(path)))
    return edges


def strongly_connected(nodes, graph):
    """Tarjan's algorithm; components of more than one node."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return result


def a_cycle(component, graph):
    """One circle through the component's first node (a shortest path back, by BFS)."""
    start = component[0]
    members = set(component)
    parents = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return list(reversed(path)) + [start]
            if w not in parents:
                parents[w] = v
                queue.append(w)
    return [start]


def check(src, show_graph=False, out=sys.stdout):
    root_file = os.path.join(src, "lib.rs")
    if not os.path.isfile(root_file):
        root_file = os.path.join(src, "main.rs")
    root = load_crate(root_file)
    edges = sibling_edges(root)
    problems = 0
    modules = len(all_modules(root)) - 1
    for parent in sorted(edges):
        graph = defaultdict(set)
        for (a, b) in edges[parent]:
            graph[a].add(b)
        where = "::".join(("crate",) + parent)
        if show_graph:
            for (a, b), refs in sorted(edges[parent].items()):
                file, line, written = refs[0]
                print(f"{src}: {where}: {a} -> {b}  ({os.path.relpath(file)}:{line} {written})", file=out)
        for component in strongly_connected(set(graph), graph):
            problems += 1
            print(f"{src}: import circle among the modules of {where}: {', '.join(component)}", file=out)
            circle = a_cycle(component, graph)
            for a, b in zip(circle, circle[1:]):
                file, line, written = edges[parent][(a, b)][0]
                print(f"    {a} -> {b}: {os.path.relpath(file)}:{line} names {written}", file=out)
        pairs = sorted({tuple(sorted(p)) for p in edges[parent] if (p[1], p[0]) in edges[parent]})
        for a, b in pairs:
            print(f"    (two-way: {where}::{a} <-> {b})", file=out) if show_graph else None
    if not problems:
        print(f"{src}: {modules} modules, no import circle (parent and child aside)", file=out)
    return problems


SELF_TESTS = {
    # name: (files, circles expected)
    "a circle through use statements": ({
        "lib.rs": "mod a;\nmod b;\n",
        "a.rs": "use crate::b::B;\npub struct A;\n",
        "b.rs": "use crate::a::A;\npub struct B;\n",
    }, 1),
    "a circle through a path in code and a re-export": ({
        "lib.rs": "mod a;\nmod b;\npub use crate::b::B;\n",
        "a.rs": "pub struct A;\nfn f() -> crate::B { todo!() }\n",
        "b.rs": "use crate::{a::{self, A}};\npub struct B;\n",
    }, 1),
    "a circle between folders": ({
        "lib.rs": "mod x;\nmod y;\n",
        "x/mod.rs": "mod one;\nmod two;\n",
        "x/one.rs": "use crate::y::deep::D;\n",
        "x/two.rs": "",
        "y/mod.rs": "pub mod deep;\n",
        "y/deep.rs": "pub struct D;\nfn g() { super::super::x::two::h(); }\n",
    }, 1),
    "parents and children, comments, strings and tests are no circle": ({
        "lib.rs": "mod x;\npub use x::inner::I;\n// use crate::x::inner; crate::y\n",
        "x/mod.rs": "pub mod inner;\nuse inner::I;\nconst S: &str = \"crate::x::inner::I\";\n",
        "x/inner.rs": "use super::*;\nuse crate::I;\npub struct I;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::inner::I;\n}\n",
    }, 0),
    "a circle inside a folder": ({
        "lib.rs": "pub mod f;\n",
        "f/mod.rs": "mod p;\nmod q;\nmod r;\n",
        "f/p.rs": "use super::q::Q;\n",
        "f/q.rs": "use super::r::R;\npub struct Q;\n",
        "f/r.rs": "use crate::f::p;\npub struct R;\n",
    }, 1),
}


def self_test():
    failed = 0
    for name, (files, expected) in SELF_TESTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            for path, content in files.items():
                full = os.path.join(tmp, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as f:
                    f.write(content)
            import io
            sink = io.StringIO()
            found = check(tmp, out=sink)
        verdict = "ok" if found == expected else "FAILED"
        failed += found != expected
        print(f"self-test: {name}: {found} circle(s), expected {expected}: {verdict}")
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", nargs="*", help="a crate's src directory (holding lib.rs or main.rs)")
    parser.add_argument("--graph", action="store_true", help="print every sibling dependency")
    parser.add_argument("--self-test", action="store_true", help="check the checker")
    args = parser.parse_args()
    if args.self_test:
        sys.exit(1 if self_test() else 0)
    if not args.src:
        parser.error("name at least one src directory")
    problems = sum(check(src, args.graph) for src in args.src)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
