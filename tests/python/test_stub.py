"""cowstore/__init__.pyi against the runtime.

Without mypy: the stub, parsed with ``ast``, declares every name of
``cowstore.__all__`` and every public method of the package's classes (the
frozen classes leave out the mutators, which raise FrozenError), and lets no
argument be passed by keyword that the runtime takes only by position.
stub_program.py, run, behaves as its marks say.  With mypy installed (the
``test`` extra): ``mypy --strict`` on stub_program.py reports errors on the
lines marked ``# E`` only, none in the stub, and the types marked ``# R:``.
"""
import ast
import inspect
import os
import re
import subprocess
import sys
import types

import pytest

import cowstore

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "stub_program.py")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cowstore.__file__)))
STUB = os.path.join(os.path.dirname(os.path.abspath(cowstore.__file__)), "__init__.pyi")

CLASSES = ["CowDict", "FrozenDict", "CowList", "FrozenList", "CowSet", "FrozenSet",
           "CowKeysView", "CowValuesView", "CowItemsView", "Change", "Store"]
FROZEN = {"FrozenDict": "CowDict", "FrozenList": "CowList", "FrozenSet": "CowSet"}
# Methods in C take their arguments by position only.
C_METHODS = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
             types.ClassMethodDescriptorType, types.MethodWrapperType)


def _stub():
    with open(STUB, encoding="utf-8") as f:
        return ast.parse(f.read())


def _base_names(node):
    for base in node.bases:
        if isinstance(base, ast.Subscript):
            base = base.value
        if isinstance(base, ast.Name):
            yield base.id


def _stub_classes():
    """{class name: (base names, {member name: [FunctionDef, ...]})}; an
    attribute (a NamedTuple's field) has no FunctionDef."""
    classes = {}
    for node in _stub().body:
        if isinstance(node, ast.ClassDef):
            methods = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    methods.setdefault(item.name, []).append(item)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    methods.setdefault(item.target.id, [])
            classes[node.name] = (list(_base_names(node)), methods)
    return classes


def _stub_methods(classes, name):
    """The methods the stub gives class name, its bases in the stub included."""
    if name not in classes:
        return {}
    bases, methods = classes[name]
    merged = {}
    for base in reversed(bases):
        merged.update(_stub_methods(classes, base))
    merged.update(methods)
    return merged


def _stub_all():
    for node in _stub().body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("the stub has no __all__")


def _stub_top_names():
    names = set()
    for node in _stub().body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _runtime_public(cls):
    """Public attributes the package's own classes give cls (not object's,
    tuple's or the collections.abc mixins')."""
    names = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("cowstore"):
            names.update(n for n in vars(klass) if not n.startswith("_"))
    return names


def test_all_matches_runtime():
    assert sorted(_stub_all()) == sorted(cowstore.__all__)


def test_all_names_declared():
    assert set(cowstore.__all__) - _stub_top_names() == set()


@pytest.mark.parametrize("name", CLASSES)
def test_public_methods_declared(name):
    classes = _stub_classes()
    declared = set(_stub_methods(classes, name))
    missing = _runtime_public(getattr(cowstore, name)) - declared
    if name in FROZEN:
        # The mutable class's mutators: they raise FrozenError, so the stub
        # leaves them out and mypy rejects fd.pop(k) and the like.
        mutable = FROZEN[name]
        mutators = set(_stub_methods(classes, mutable)) - declared
        assert mutators, mutable
        missing -= mutators
    assert missing == set()


def _keyword_params(func):
    """Names the stub lets a caller pass by keyword (self and cls not)."""
    params = [a.arg for a in func.args.args]
    decorators = {d.id for d in func.decorator_list if isinstance(d, ast.Name)}
    if params and "staticmethod" not in decorators:
        params = params[1:]
    params += [a.arg for a in func.args.kwonlyargs]
    return [p for p in params if not p.startswith("__")]


def _keyword_mismatches(stub_funcs, runtime, where):
    """Stub parameters passable by keyword that runtime takes by position only."""
    if isinstance(runtime, (classmethod, staticmethod)):
        runtime = runtime.__func__
    bad = []
    for func in stub_funcs:
        names = _keyword_params(func)
        if not names:
            continue
        if isinstance(runtime, C_METHODS):
            bad += [f"{where}({n}=)" for n in names]
            continue
        params = inspect.signature(runtime).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue
        by_keyword = {n for n, p in params.items()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        bad += [f"{where}({n}=)" for n in names if n not in by_keyword]
    return bad


def test_keywords_only_where_runtime_takes_them():
    bad = []
    classes = _stub_classes()
    for name in CLASSES:
        cls = getattr(cowstore, name)
        for method, funcs in _stub_methods(classes, name).items():
            runtime = inspect.getattr_static(cls, method, None)
            if runtime is not None and not isinstance(runtime, property):
                bad += _keyword_mismatches(funcs, runtime, f"{name}.{method}")
    for node in _stub().body:
        if isinstance(node, ast.FunctionDef) and node.name in cowstore.__all__:
            bad += _keyword_mismatches([node], getattr(cowstore, node.name), node.name)
    assert bad == []


def _marked_lines():
    """{line number: mark} for stub_program.py's ``# E...`` and ``# R: ...``."""
    marks = {}
    with open(PROGRAM, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = re.search(r"  # (E(?:: TypeError)?|R: .+?)(?:  \(.*\))?$", line.rstrip("\n"))
            if m:
                marks[number] = m[1]
    return marks


def _outer_class(revealed):
    """'CowDict' of 'cowstore.CowDict[str, int]', 'int' of 'builtins.int'."""
    return revealed.split("[", 1)[0].rsplit(".", 1)[-1]


def test_program_runs_as_marked(tmp_path):
    with open(PROGRAM, encoding="utf-8") as f:
        lines = f.read().splitlines()
    marks = _marked_lines()
    seen = []

    def reveal(number, value):
        seen.append((number, type(value).__name__))
        return value

    good = []
    for number, line in enumerate(lines, 1):
        mark = marks.get(number, "")
        if mark.startswith("E"):
            good.append("")             # keeps the line numbers
        elif mark.startswith("R:"):
            good.append(line.replace("reveal_type(", f"reveal_type({number}, ", 1))
        else:
            good.append(line)
    namespace = {"__name__": "stub_program", "reveal_type": reveal}
    exec(compile("\n".join(good), PROGRAM, "exec"), namespace)
    for number, kind in seen:
        assert kind == _outer_class(marks[number][3:]), (number, lines[number - 1])
    for number, mark in marks.items():
        if mark == "E: TypeError":
            with pytest.raises(TypeError):
                exec(compile("\n" * (number - 1) + lines[number - 1], PROGRAM, "exec"), namespace)


def _normalized(revealed):
    """A revealed type as mypy 2 spells it, whatever the version."""
    revealed = re.sub(r"\bbuiltins\.|\bcowstore\.", "", revealed)
    return re.sub(r"Union\[([^\[\]]*)\]", lambda m: m[1].replace(", ", " | "), revealed)


def test_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    env = dict(os.environ, MYPYPATH=PACKAGE_ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--cache-dir", str(tmp_path / "cache"), PROGRAM],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    errors, revealed, other = {}, {}, []
    for line in proc.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): (error|note): (.*)", line)
        if not m:
            other.append(line)
        elif os.path.basename(m[1]) != "stub_program.py":
            other.append(line)              # anything in the stub is a failure
        elif m[3] == "error":
            errors.setdefault(int(m[2]), []).append(m[4])
        elif m[4].startswith("Revealed type is "):
            revealed[int(m[2])] = _normalized(m[4][len('Revealed type is "'):-1])
    assert other == [] and proc.stderr == ""
    marks = _marked_lines()
    expected_errors = {n for n, mark in marks.items() if mark.startswith("E")}
    assert {n: errors.get(n) for n in set(errors) ^ expected_errors} == {}
    assert {n: revealed.get(n) for n, mark in marks.items() if mark.startswith("R:")} == {
        n: mark[3:] for n, mark in marks.items() if mark.startswith("R:")}
