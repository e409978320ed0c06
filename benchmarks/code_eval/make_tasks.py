"""Cut the evaluation tasks out of the client files of the three projects in projects/.

    python benchmarks/code_eval/make_tasks.py      # rewrites benchmarks/code_eval/tasks.jsonl

A member task is a file prefix ending right after `obj.` where `obj` has a type (or is a module)
defined in the project; the hidden answer is the identifier that followed. A call task is a
prefix ending right after `f(` where `f` is a project function or method; the hidden answer is
the argument text. The owner of each name is recorded as `module:qualname`, so the benchmark can
check generated names against the real objects (runtime introspection, not jedi).
"""

from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

import jedi

HERE = Path(__file__).resolve().parent
PROJECTS = {"quarry": ["yard.py"], "mirefold": ["branch.py"], "gribble": ["runner.py"]}


def _owner(defs, package: str) -> tuple[str, bool] | None:
    """(module:qualname, is_instance) of a project type or module, else None."""
    for d in defs:
        full = d.full_name or ""
        if not full.startswith(package):
            continue
        if d.type == "module":
            return full + ":", False
        if d.type in ("instance", "class"):
            module, _, qual = full.rpartition(".")
            return f"{module}:{qual}", d.type == "instance"
    return None


def _matching_paren(text: str, start: int) -> int | None:
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return None


def tasks_for(project: str, filename: str) -> list[dict]:
    root = HERE / "projects" / project
    path = root / filename
    text = path.read_text()
    script = jedi.Script(code=text, path=str(path), project=jedi.Project(str(root)))
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    out: list[dict] = []
    for k, tok in enumerate(toks[:-1]):
        nxt = toks[k + 1]
        (line, col) = tok.start
        cut = offsets[line - 1] + tok.end[1]
        if lines[line - 1].lstrip().startswith(("import ", "from ")):
            continue  # dotted module paths of import statements are not member accesses
        if tok.string == "." and nxt.type == tokenize.NAME:
            owner = _owner(script.infer(line, col), project)
            if owner is None:
                continue
            end_line = text[cut:].split("\n", 1)[0]
            out.append({
                "id": f"{project}/{filename}:{line}:{col}:member", "kind": "member", "project": project,
                "path": filename, "prefix": text[:cut], "expected": nxt.string, "owner": owner[0],
                "instance": owner[1], "line_rest": end_line,
            })
        elif tok.string == "(" and k and toks[k - 1].type == tokenize.NAME and nxt.string != ")":
            sigs = script.get_signatures(line, col + 1)
            name_tok = toks[k - 1]
            callee = script.infer(*name_tok.start)
            if len(sigs) != 1 or not callee or not (callee[0].full_name or "").startswith(project):
                continue
            if callee[0].type not in ("function",):
                continue
            close = _matching_paren(text, cut - 1)
            module, _, qual = callee[0].full_name.rpartition(".")
            qualname = qual
            if callee[0].parent() is not None and callee[0].parent().type == "class":
                parent = callee[0].parent()
                module = parent.full_name.rpartition(".")[0]
                qualname = f"{parent.name}.{qual}"
            bound = "." in qualname and toks[k - 2].string == "."
            out.append({
                "id": f"{project}/{filename}:{line}:{col}:call", "kind": "call", "project": project,
                "path": filename, "prefix": text[:cut], "expected": text[cut:close], "owner": f"{module}:{qualname}",
                "instance": bound, "line_rest": text[cut:].split("\n", 1)[0],
            })
    return out


def main() -> None:
    tasks = [t for project, files in PROJECTS.items() for f in files for t in tasks_for(project, f)]
    with open(HERE / "tasks.jsonl", "w") as fh:
        fh.writelines(json.dumps(task) + "\n" for task in tasks)
    kinds = {k: sum(t["kind"] == k for t in tasks) for k in ("member", "call")}
    print(f"{len(tasks)} tasks ({kinds}) -> {HERE / 'tasks.jsonl'}")


if __name__ == "__main__":
    main()
