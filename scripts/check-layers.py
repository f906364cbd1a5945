#!/usr/bin/env python3
"""Checks the server's layering that the compiler does not: within each crate, no two source files
import each other, directly or through others (no import circle), and no file below the
approval front end's handlers imports axum.

A file's imports are the `crate::` paths it names (in `use` items and inline), resolved to the
file that defines the module; `super::` is resolved the same way. The crate root is the top and
is left out (a path through a re-export in it is not followed). Test modules (`tests.rs`,
`#[cfg(test)] mod tests { ... }`) and doc comments are left out.
Run from the repository root: python3 scripts/check-layers.py
"""
import os
import re
import sys

CRATES = ["log-server/src", "log-server/approvals/src", "log-server/cli/src"]
# Modules of the front end below its handlers: plain Rust, no HTTP framework.
NO_AXUM = {
    "log-server/approvals/src": [
        "request.rs", "store.rs", "config.rs", "live.rs", "util.rs", "state.rs",
        "passkeys/ceremony.rs", "passkeys/session.rs", "metrics.rs", "audit.rs", "auditors.rs",
    ],
}


def module_files(root):
    """Maps module paths (a::b) to files."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), root)
            if rel.endswith("tests.rs") and rel != "tests.rs":
                continue
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            out["::".join(parts)] = rel
    return out


def strip(src):
    src = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", src, flags=re.S)
    return "\n".join(l for l in src.split("\n") if not l.lstrip().startswith("//"))


def imports(src, here, mods):
    """The modules a file names, resolved to the longest defined prefix."""
    found = set()
    paths = []
    for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", src):
        paths.append(m.group(1).split("::"))
    for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}", src):
        base = [p for p in m.group(1).split("::") if p]
        for name in m.group(2).split(","):
            name = name.strip().split("::")[0]
            if name:
                paths.append(base + [name])
    parent = here.split("::")[:-1] if here else []
    for m in re.finditer(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", src):
        paths.append(parent + m.group(1).split("::"))
    for p in paths:
        for n in range(len(p), -1, -1):
            key = "::".join(p[:n])
            if key in mods:
                if key != here:
                    found.add(key)
                break
    return found


def cycles(graph):
    seen, stack, on, out = set(), [], set(), []

    def visit(n):
        seen.add(n)
        stack.append(n)
        on.add(n)
        for m in sorted(graph.get(n, ())):
            if m in on:
                out.append(stack[stack.index(m):] + [m])
            elif m not in seen:
                visit(m)
        stack.pop()
        on.discard(n)

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    return out


def main():
    failed = False
    for root in CRATES:
        mods = module_files(root)
        graph = {}
        for name, rel in mods.items():
            # The crate root declares and composes every module: it is the top, left out as an
            # importer and as an imported module (re-exports through it are not followed).
            if name == "":
                continue
            src = strip(open(os.path.join(root, rel), encoding="utf-8").read())
            graph[name] = {d for d in imports(src, name, mods) if d != ""}
        for c in cycles(graph):
            failed = True
            print(f"{root}: import circle: {' -> '.join(x or 'crate' for x in c)}")
        for rel in NO_AXUM.get(root, []):
            src = strip(open(os.path.join(root, rel), encoding="utf-8").read())
            if re.search(r"\baxum::", src):
                failed = True
                print(f"{root}/{rel}: below the handlers, but imports axum")
    if failed:
        sys.exit(1)
    print("layering: no import circle in " + ", ".join(CRATES) + "; no axum below the handlers")


main()
