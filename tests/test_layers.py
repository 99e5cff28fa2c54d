"""The import direction: the model and the trainer never pull in the experiment or plotting code,
and no module imports a layer above its own, at the top of the file or inside a function."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    ["configurator"],
    ["cpu_runtime", "machine", "files", "gpt2_tokenizer", "data.text_sources"],
    ["diagnostics", "model"],
    ["model_advanced_centering"],
    ["training"],  # the trainer's plumbing: runtime, batches, checkpoint, run folder, metrics
    ["train"],
    ["train_advanced_centered", "sample"],
    ["experiments", "benchmarking", "interop"],  # the packages and every module in them; the benchmarks' runner
    ["scripts", "data.prepare"],  # command lines: the scripts, and data/<dataset>/prepare.py
]
SKIPPED_FOLDERS = {".git", "tests", "out", "results", "config", "__pycache__"}


def project_modules():
    """{module name: path} of every Python file of the project (tests and configs aside)."""
    modules = {}
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".")
                modules[module.removesuffix(".__init__")] = path
    return modules


def layer_of(module):
    if module.startswith("data.") and module.endswith(".prepare"):
        module = "data.prepare"
    for rank, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports_of(path, modules):
    """The project modules a file imports anywhere (lazy imports inside functions included). A
    script's `import fold_centering` (scripts/ is on sys.path) names scripts.fold_centering."""
    scripts = {m.split(".", 1)[1]: m for m in modules if m.startswith("scripts.")}
    found = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name in modules:
                found.add(name)
            elif name in scripts and os.sep + "scripts" + os.sep in path:
                found.add(scripts[name])
    return found


def test_no_module_imports_a_layer_above_its_own():
    modules = project_modules()
    upward = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
              for m, path in sorted(modules.items()) for d in sorted(imports_of(path, modules))
              if layer_of(d) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_scripts_import_the_library_not_each_other():
    modules = project_modules()
    crossing = [f"{m} imports {d}" for m, path in sorted(modules.items()) if m.startswith("scripts.")
                for d in sorted(imports_of(path, modules)) if d.startswith("scripts.") and d != "scripts._repo_root"]
    assert not crossing, "\n".join(crossing)


def test_the_import_graph_has_no_cycles():
    """Within a layer too (the sweep and its executors once imported each other, lazily)."""
    modules = project_modules()
    graph = {m: {d for d in imports_of(path, modules) if d != m and d in modules and d != "experiments"}
             for m, path in modules.items()}
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]) if dep in stack else f"{module} -> {dep}")
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", ["model", "model_advanced_centering", "train", "train_advanced_centered", "sample"])
def test_the_model_and_the_trainer_load_no_experiment_or_plotting_code(module):
    code = (f"import sys; import {module}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'experiments', 'matplotlib', 'scipy', 'transformers'}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"importing {module} loads {r.stdout.strip()}"
