#!/usr/bin/env python3
"""Fails (exit 1) when the top-level modules of a crate import each other in a cycle.

    scripts/check-module-cycles.py [SRC_DIR ...]     (default: node/src)

A module is a file or folder directly under SRC_DIR (main.rs and lib.rs excepted); an edge
A -> B is any `crate::B` path in A's non-test code (the part of a file before its
`#[cfg(test)] mod tests`, comments left out, and no file whose name contains `test`). Run by
`make lint`, so a cycle cannot come back unnoticed: `config` must stay a leaf, and no two
modules may need each other.
"""
import os
import re
import sys


def edges_of(root):
    mods, edges = set(), {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs") or "test" in f:
                continue
            path = os.path.join(dirpath, f)
            top = os.path.relpath(path, root).split(os.sep)[0]
            mod = top[:-3] if top.endswith(".rs") else top
            if mod in ("main", "lib"):
                continue
            mods.add(mod)
            src = re.split(r"#\[cfg\(test\)\]\s*mod tests", open(path, encoding="utf-8").read())[0]
            src = re.sub(r"//[^\n]*", "", src)
            refs = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", src)) - {mod}
            edges.setdefault(mod, set()).update(refs)
    return mods, {m: {t for t in ts if t in mods} for m, ts in edges.items()}


def sccs(mods, edges):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(mods):
        if m not in index:
            visit(m)
    return out


def main():
    roots = sys.argv[1:] or ["node/src"]
    bad = False
    for root in roots:
        mods, edges = edges_of(root)
        for comp in sccs(mods, edges):
            bad = True
            detail = "; ".join(f"{m} -> {', '.join(sorted(edges[m] & set(comp)))}" for m in comp)
            print(f"{root}: modules import each other in a cycle: {{{', '.join(comp)}}} ({detail})")
        if not bad:
            print(f"{root}: {len(mods)} modules, no import cycle")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
