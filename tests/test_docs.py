"""The documentation is code: every checkable claim in README.md, CONTRIBUTING.md and docs/*.md holds.

Where claims are read (line numbers are the Markdown file's):

- *inline code*: each `` `span` `` of a prose paragraph (one wrapped onto the next line is
  joined with a space and counts from its first line);
- *code lines*: each line of a fenced block (```` ``` ````, ```` ```bash ````, ...); a
  ```` ```python ```` block is *python*, every other block is *shell-like*.

What is checked (each rule is one regular pattern; nothing else in the text is read):

(a) imports: a code line or inline span that starts with ``from facegen...import`` or
    ``import facegen...`` (a parenthesised import continues over the following code lines) must
    import; an inline span that is exactly a dotted name ``facegen.<module>...`` (optionally
    followed by ``(...)``), where ``<module>`` is a subpackage or module of facegen/, must resolve
    to a module or an attribute of one (``facegen.run_key``, an MLflow tag, names no module).
(b) params keys: ``section.key``, where ``section`` is a top-level section of params.yaml and
    ``key`` a lower-case identifier, not preceded by a word character, ``.``, ``/``, ``~`` or ``-`` and
    not followed by a word character, ``/``, ``(`` or ``.identifier``, in inline spans and
    shell-like code lines (python blocks are skipped: ``sample.steps`` there may be a variable's
    attribute). ``key`` must be a key of ``params.yaml[section]`` or a field of the config
    dataclass that the stage scripts read that section into (``load_section(Config, "section")``).
    A token whose ``.key`` is a file suffix of the repository (``train.py``, ``fid.json``) is a
    file name, not a key.
(c) stage outputs: a path starting with ``data/``, ``metrics/`` or ``models/`` (same boundaries;
    ``<placeholder>`` and ``*`` end the checked part) must be a dvc.yaml out, metric or plot, lie
    inside one, or be a folder holding one; :data:`NON_DVC_OUTPUTS` lists, with the reason, the
    few files something other than a DVC stage writes there.
(d) CLI flags: on one shell-like code line (its ``# comment`` cut off) or inline span, every
    ``--flag`` after ``facegen <command>``, ``python -m facegen.<module>`` or ``stages/<name>.py``
    (up to a shell separator ``|``, ``;``, ``&&``, ``#`` or ``->``) must appear in that command's
    ``--help``; the script and the module (a ``.py`` or a package's ``__main__.py``) must exist,
    and ``<command>`` must be a subcommand of ``facegen --help`` (on code lines, and in inline
    spans that carry a flag: prose such as ``facegen best`` is not a command line).
(e) source paths: a path starting with ``facegen/``, ``stages/``, ``tests/`` or ``benchmarks/``
    and then a letter, ``_``, ``<``, ``*`` or ``{`` (``facegen/0.1``, a user agent, is no path) must
    exist (``<placeholder>``/``*`` match any name, ``{a,b}`` means both; ``facegen/x/y.Name`` is
    attribute ``Name`` of module ``facegen.x.y``).

Each failure names ``file:line``, the claim and why it is wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Files under data/, metrics/ or models/ that no DVC stage writes, each with who writes it.
NON_DVC_OUTPUTS = {
    "data/studio_judgements.parquet": "the studio's judge tab appends to it (facegen/studio), no stage",
}

SEPARATORS = re.compile(r"\s(?:\||;|&&|#|->)\s|\s#")
BOUND_BEFORE = r"(?<![\w./~-])"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One piece of code text from a Markdown file."""

    where: str  # "docs/x.md:12"
    text: str
    kind: str  # "inline" | "python" | "shell"


def doc_files() -> list[Path]:
    """README.md, CONTRIBUTING.md (when present) and docs/*.md."""
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [f for f in files if f.is_file()]


def claims(path: Path) -> Iterator[Claim]:
    """Inline code spans of prose paragraphs and the lines of fenced blocks, with their line numbers."""
    name = path.relative_to(ROOT).as_posix()
    fence: str | None = None
    paragraph: list[tuple[int, str]] = []
    for number, line in enumerate([*path.read_text(encoding="utf-8").splitlines(), ""], start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            yield from inline_spans(name, paragraph)
            paragraph = []
        if stripped.startswith("```"):
            fence = None if fence is not None else ("python" if stripped[3:].strip() == "python" else "shell")
        elif fence is not None:
            yield Claim(f"{name}:{number}", line, fence)
        elif stripped:
            paragraph.append((number, line))


def inline_spans(name: str, paragraph: list[tuple[int, str]]) -> Iterator[Claim]:
    """The `` `spans` `` of one paragraph (a span may wrap onto the next line; it counts from its first)."""
    if not paragraph:
        return
    text = "\n".join(line for _, line in paragraph)
    for match in re.finditer(r"`([^`]+)`", text):
        number = paragraph[0][0] + text.count("\n", 0, match.start())
        yield Claim(f"{name}:{number}", re.sub(r"\s*\n\s*", " ", match.group(1)), "inline")


def all_claims() -> list[Claim]:
    return [c for f in doc_files() for c in claims(f)]


# ---------------------------------------------------------------- (a) imports


def import_statements(items: list[Claim]) -> Iterator[tuple[Claim, str]]:
    """``from facegen... import ...`` / ``import facegen...`` statements (parenthesised ones joined)."""
    pending: tuple[Claim, str] | None = None
    for claim in items:
        text = claim.text.strip()
        if pending is not None:
            joined = pending[1] + " " + text
            if ")" in text or claim.kind == "inline":
                yield pending[0], joined
                pending = None
            else:
                pending = (pending[0], joined)
            continue
        if re.match(r"(from\s+facegen[\w.]*\s+import\s|import\s+facegen\b)", text):
            if "(" in text and ")" not in text and claim.kind != "inline":
                pending = (claim, text)
            else:
                yield claim, text


def check_import(statement: str) -> str | None:
    """Why ``statement`` does not import (None when it does)."""
    try:
        node = ast.parse(statement.split("#")[0].strip()).body[0]
    except SyntaxError as err:
        return f"not a Python statement ({err.msg})"
    try:
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                if not facegen_module(f"{node.module}.{alias.name}"):
                    return f"{node.module} has no name {alias.name!r}"
                importlib.import_module(f"{node.module}.{alias.name}")
    except ImportError as err:
        return f"{type(err).__name__}: {err}"
    return None


def resolve_dotted(name: str) -> str | None:
    """Why the dotted name ``facegen.a.b.C`` does not resolve (None when it does)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:i])} has no attribute {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"no module {parts[0]!r}"


def facegen_module(name: str) -> bool:
    """Whether ``name`` (``fid`` or ``facegen.fid.score``) is a subpackage or module of facegen/."""
    path = ROOT / "facegen" / name.removeprefix("facegen.").replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def test_documented_imports_import() -> None:
    items = all_claims()
    problems = [f"{c.where}: `{s}`: {why}" for c, s in import_statements(items) if (why := check_import(s))]
    for claim in items:
        match = re.fullmatch(r"(facegen\.(\w+)(?:\.\w+)*)(\(.*\))?", claim.text.strip())
        if claim.kind != "inline" or not match or not facegen_module(match.group(2)):
            continue
        if why := resolve_dotted(match.group(1)):
            problems.append(f"{claim.where}: `{claim.text}`: {why}")
    assert not problems, "documented Python names that do not import:\n" + "\n".join(problems)


# ---------------------------------------------------------------- (b) params keys


def params() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@cache
def section_configs() -> dict[str, type]:
    """params section -> the config dataclass a stage script reads it into (``load_section(C, "s")``)."""
    found: dict[str, type] = {}
    for script in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        origin = {
            a.asname or a.name: n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "load_section"
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Name)
                and isinstance(node.args[1], ast.Constant)
            ):
                cls = getattr(importlib.import_module(str(origin[node.args[0].id])), node.args[0].id)
                found[str(node.args[1].value)] = cls
    return found


@cache
def file_suffixes() -> frozenset[str]:
    """Suffixes (without the dot) of the repository's tracked files and dvc.yaml's outputs."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = [*tracked.split(), *dvc_outputs()]
    return frozenset(Path(n).suffix[1:] for n in names if Path(n).suffix)


def params_keys(items: list[Claim]) -> Iterator[tuple[Claim, str, str]]:
    sections = "|".join(map(re.escape, params()))
    pattern = re.compile(BOUND_BEFORE + rf"({sections})\.([a-z_][a-z0-9_]*)(?![\w/(]|\.\w)")
    for claim in items:
        if claim.kind == "python":
            continue
        for match in pattern.finditer(claim.text):
            if match.group(2) not in file_suffixes():
                yield claim, match.group(1), match.group(2)


def test_documented_params_keys_exist() -> None:
    table, configs = params(), section_configs()
    problems = []
    for claim, section, key in params_keys(all_claims()):
        fields = {f.name for f in dataclasses.fields(configs[section])} if section in configs else set()
        if key not in (table[section] or {}) and key not in fields:
            owner = configs[section].__name__ if section in configs else "no config class"
            problems.append(
                f"{claim.where}: `{section}.{key}`: no key {key!r} in params.yaml section {section!r} nor in {owner}"
            )
    assert not problems, "documented params keys that do not exist:\n" + "\n".join(problems)


# ---------------------------------------------------------------- (c) stage outputs


@cache
def dvc_outputs() -> tuple[str, ...]:
    """Every out, metric and plot path of dvc.yaml (stage-level and top-level plots)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    paths: list[str] = []
    for stage in spec["stages"].values():
        for field in ("outs", "metrics", "plots"):
            paths += [next(iter(e)) if isinstance(e, dict) else e for e in stage.get(field, [])]
    for entry in spec.get("plots", []):
        if isinstance(entry, str):
            paths.append(entry)
    return tuple(p.rstrip("/") for p in paths)


def checked_part(path: str) -> str:
    """The path up to its first ``<placeholder>`` or ``*`` (whole segments), without a trailing ``/``."""
    cut = min((i for i in (path.find("<"), path.find("*")) if i >= 0), default=-1)
    if cut >= 0:
        path = path[:cut].rsplit("/", 1)[0] if "/" in path[:cut] else ""
    return path.rstrip("/.,:")


def test_documented_stage_outputs_are_dvc_outputs() -> None:
    outs = dvc_outputs()
    pattern = re.compile(BOUND_BEFORE + r"(?:data|metrics|models)/[\w./<>*-]*")
    problems = []
    for claim in all_claims():
        for match in pattern.finditer(claim.text):
            path = checked_part(match.group(0))
            if "/" not in path or path in NON_DVC_OUTPUTS:
                continue
            if not any(path == o or path.startswith(o + "/") or o.startswith(path + "/") for o in outs):
                problems.append(
                    f"{claim.where}: `{match.group(0)}`: not a dvc.yaml out, metric or plot, nor inside or "
                    "above one, nor in NON_DVC_OUTPUTS"
                )
    assert not problems, "documented outputs that no stage writes:\n" + "\n".join(problems)


# ---------------------------------------------------------------- (d) CLI flags


def command_flags(items: list[Claim]) -> Iterator[tuple[Claim, str, list[str]]]:
    """(claim, command, flags): command is ``facegen <sub>`` or ``stages/<x>.py``."""
    pattern = re.compile(r"(?<![\w/.-])(python -m facegen(?:\.\w+)+|facegen\s+[a-z][\w-]*|stages/\w+\.py)")
    for claim in items:
        if claim.kind == "python":
            continue
        text = re.split(r"(?:^|\s)#", claim.text, maxsplit=1)[0] if claim.kind == "shell" else claim.text
        for match in pattern.finditer(text):
            rest = SEPARATORS.split(text[match.end() :], maxsplit=1)[0]
            flags = re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", rest)
            command = re.sub(r"\s+", " ", match.group(1))
            if not command.startswith("facegen ") or flags or claim.kind == "shell":
                yield claim, command, flags


HELP_SCRIPT = r"""
import contextlib, io, json, runpy, sys
out = {}
for command in json.loads(sys.argv[1]):
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            if command.split()[0] == "facegen":
                from facegen.cli import main
                main([*command.split()[1:], "--help"])
            elif command.startswith("python -m "):
                sys.argv = [command, "--help"]
                runpy.run_module(command.split()[2], run_name="__main__", alter_sys=True)
            else:
                sys.argv = [command, "--help"]
                runpy.run_path(command, run_name="__main__")
    except SystemExit:
        pass
    out[command] = buf.getvalue()
print(json.dumps(out))
"""


def help_texts(commands: list[str]) -> dict[str, str]:
    """``--help`` output of each command (``facegen``, ``facegen <sub>``, ``stages/<x>.py``), one process."""
    run = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, json.dumps(commands)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return dict(json.loads(run.stdout))


def runnable_module(name: str) -> bool:
    """Whether ``python -m name`` runs a facegen module (``x.py``, or a package's ``__main__.py``)."""
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def test_documented_cli_flags_exist() -> None:
    found = list(command_flags(all_claims()))
    stages = {f"stages/{p.name}" for p in (ROOT / "stages").glob("*.py")}
    top = help_texts(["facegen"])["facegen"]
    # argparse lists each subcommand on its own line, indented four spaces under the COMMAND metavar
    commands = set(re.findall(r"^    ([a-z][\w-]*)(?:\s{2,}|$)", top, flags=re.M))
    assert commands, f"no subcommands found in `facegen --help`:\n{top}"
    problems = [
        f"{c.where}: `{c.text.strip()}`: `{cmd}` is not a facegen command (commands: {', '.join(sorted(commands))})"
        for c, cmd, _ in found
        if cmd.startswith("facegen ") and cmd.split()[1] not in commands
    ]
    problems += [
        f"{c.where}: `{c.text.strip()}`: {cmd} does not exist"
        for c, cmd, _ in found
        if cmd[:7] == "stages/" and cmd not in stages
    ]
    modules = {cmd for _, cmd, _ in found if cmd.startswith("python -m ")}
    runnable = {m for m in modules if runnable_module(m.split()[2])}
    problems += [
        f"{c.where}: `{c.text.strip()}`: {cmd.split()[2]} is no module with a command line (a .py or a __main__.py)"
        for c, cmd, _ in found
        if cmd in modules - runnable
    ]
    wanted = {cmd for _, cmd, flags in found if flags} & ({f"facegen {c}" for c in commands} | stages | runnable)
    helps = {cmd: set(re.findall(r"--[\w-]+", text)) for cmd, text in help_texts(sorted(wanted)).items()}
    for claim, cmd, flags in found:
        for flag in flags:
            if cmd in helps and flag not in helps[cmd] | {"--help"}:
                problems.append(
                    f"{claim.where}: `{claim.text.strip()}`: {flag} is not in `{cmd} --help` "
                    f"(it has {', '.join(sorted(helps[cmd]))})"
                )
    assert not problems, "documented commands and flags that do not exist:\n" + "\n".join(problems)


# ---------------------------------------------------------------- (e) source paths


def source_problem(path: str) -> str | None:
    """Why the repository path ``path`` (placeholders allowed) does not exist (None when it does)."""
    clean = path.rstrip("/.,:")
    if braces := re.search(r"\{([^{}]*)\}", clean):
        alternatives = [clean[: braces.start()] + a + clean[braces.end() :] for a in braces.group(1).split(",")]
        return next((f"{a}: {why}" for a in alternatives if (why := source_problem(a))), None)
    if re.search(r"[<*]", clean):
        pattern = re.sub(r"<[^>/]*>", "*", clean)
        return None if list(ROOT.glob(pattern)) else f"nothing matches {pattern}"
    if (ROOT / clean).exists():
        return None
    module, _, attr = clean.rpartition(".")
    if clean.startswith("facegen/") and module and (ROOT / f"{module}.py").is_file():
        return resolve_dotted(f"{module.replace('/', '.')}.{attr}")
    return "no such file or folder"


def test_documented_source_paths_exist() -> None:
    pattern = re.compile(BOUND_BEFORE + r"(?:facegen|stages|tests|benchmarks)/(?:[A-Za-z_<*{][\w./<>*{},-]*)?")
    problems = [
        f"{c.where}: `{m.group(0)}`: {why}"
        for c in all_claims()
        for m in pattern.finditer(c.text)
        if (why := source_problem(m.group(0)))
    ]
    assert not problems, "documented repository paths that do not exist:\n" + "\n".join(problems)


# ---------------------------------------------------------------- the rules themselves


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("dvc exp run -S train.lr=1e-4 -S sample.steps=8", "shell", [("train", "lr"), ("sample", "steps")]),
        ("stages/train.py", "inline", []),
        ("facegen.fid.score.Scorer", "inline", []),
        ("metrics/fid.json", "inline", []),
        ("train.lr", "python", []),
        ("align.center_shift x", "inline", [("align", "center_shift")]),
    ],
)
def test_params_key_pattern(text: str, kind: str, expected: list[tuple[str, str]]) -> None:
    assert [(s, k) for _, s, k in params_keys([Claim("x.md:1", text, kind)])] == expected


def test_checks_catch_a_broken_name() -> None:
    """Each rule reports a wrong claim (so a passing run means the claims hold, not that none was read)."""
    assert check_import("from facegen.sample.stage import generate_nothing") is not None
    assert check_import("from facegen.common.config import load_section") is None
    assert resolve_dotted("facegen.common.config.no_such_name") is not None
    assert source_problem("facegen/common/nothing.py") == "no such file or folder"
    assert source_problem("facegen/common/config.load_section") is None
    assert source_problem("tests/common/test_{config,atomic}.py") is None
    assert (
        source_problem("tests/common/test_{config,nothing}.py")
        == "tests/common/test_nothing.py: no such file or folder"
    )
    assert checked_part("data/control/<attribute>.png") == "data/control"
    claim = Claim("x.md:3", "facegen studio --host 0.0.0.0 --port 1 | tee log # --not-a-flag", "shell")
    assert list(command_flags([claim])) == [(claim, "facegen studio", ["--host", "--port"])]
    assert list(command_flags([Claim("x.md:4", "dvc repro   # then facegen best --all", "shell")])) == []


# ---------------------------------------------------------------- lists the docs copy from the code


def doc_line(path: str, anchor: str) -> tuple[str, str]:
    """(``path:line``, text) of the first line of ``path`` holding ``anchor`` (a failure names the anchor)."""
    for number, line in enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), start=1):
        if anchor in line:
            return f"{path}:{number}", line
    raise AssertionError(f"{path}: no line holds {anchor!r}: update the test with the text that replaced it")


def test_train_doc_lists_the_csv_columns_and_operational_keys_of_the_code() -> None:
    from facegen.train.config import OPERATIONAL_KEYS
    from facegen.train.metrics_files import EPOCH_COLUMNS, SCORE_COLUMNS

    where, line = doc_line("docs/train.md", "one row per epoch: `")
    documented = line.split("one row per epoch: `", 1)[1].split("`", 1)[0].split(", ")
    assert documented == [*EPOCH_COLUMNS, *SCORE_COLUMNS], f"{where}: metrics/train_epochs.csv columns"
    text = (ROOT / "docs/train.md").read_text(encoding="utf-8")
    sentence = text[text.index("Operational keys") : text.index("`OPERATIONAL_KEYS`")]
    assert set(re.findall(r"`(\w+)`", sentence)) == OPERATIONAL_KEYS, "docs/train.md: the operational keys"


def test_pipeline_doc_demo_overrides_are_the_demos() -> None:
    """Each ``key: value`` span of the `train.*` / `sample.*` rows of docs/pipeline.md's demo table."""
    from facegen.demo.run import DEMO_PARAMS

    for section in ("train", "sample"):
        where, line = doc_line("docs/pipeline.md", f"   | `{section}.*` | ")
        pairs = [p.split(": ", 1) for p in re.findall(r"`(\w+: [^`]+)`", line)]
        assert pairs, f"{where}: no `key: value` span"
        wrong = {k: (yaml.safe_load(v), DEMO_PARAMS.get(f"{section}.{k}")) for k, v in pairs}
        wrong = {k: pair for k, pair in wrong.items() if pair[0] != pair[1]}
        assert not wrong, f"{where}: documented value != facegen.demo.run's (documented, demo): {wrong}"


def make_recipe(target: str) -> list[str]:
    """The recipe lines of ``target`` in the Makefile (``$(PY) -m`` written as ``python -m``)."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{target}:")), None)
    assert start is not None, f"Makefile: no target {target!r}"
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(PY) -m ", "python -m "))
    return recipe


def test_make_test_fast_runs_the_documented_fast_lane() -> None:
    recipe = make_recipe("test-fast")
    assert recipe == ["python -m ruff check .", 'python -m pytest -m "not slow"'], f"Makefile test-fast: {recipe}"
    for doc in ("README.md", "CONTRIBUTING.md"):
        where, _ = doc_line(doc, "`make test-fast`")
        spans = [c.text for c in claims(ROOT / doc) if c.kind == "inline"]
        lane = [s.removeprefix("python -m ") for s in spans if re.fullmatch(r'(python -m )?pytest -m "[^"]+"', s)]
        assert lane, f'{doc}: no `pytest -m "..."` span beside {where}\'s `make test-fast`'
        assert all(f"python -m {cmd}" == recipe[1] for cmd in lane), f"{doc}: {lane} != Makefile's {recipe[1]}"


def test_pipeline_doc_names_the_sample_keys_control_reads() -> None:
    """The rerun table's `sample.*` row lists exactly the ``sample.*`` params dvc.yaml gives ``control``."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    declared = {p for p in spec["stages"]["control"]["params"] if isinstance(p, str) and p.startswith("sample.")}
    where, line = doc_line("docs/pipeline.md", "| `sample.*` | sample, fid")
    assert set(re.findall(r"`(sample\.\w+)`", line)) == declared, f"{where}: dvc.yaml's control reads {declared}"
