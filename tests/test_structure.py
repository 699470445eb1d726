"""The shape of the package, as a reader meets it: no import circles, files short enough to hold in your head, no
trainer library, and the SFT core apart from the tweet domain."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minisft"
MAX_LINES = 400
TRAINER_LIBRARIES = ("transformers", "trl", "accelerate", "lightning", "pytorch_lightning", "peft")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The minisft modules a file imports, at the top or inside a function (a lazy import still ties two modules)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from minisft import data` imports the module minisft.data, not just the package
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports_of(path, known) - {name} for name, path in modules().items()}


def cycle_in(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(g[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(g):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_a_module_that_imports_it():
    g = graph()
    assert len(g) > 25 and "minisft.model" in g["minisft.pretrained"]  # the graph is really read
    assert cycle_in(g) is None, f"import circle: {' -> '.join(cycle_in(g))}"


def test_the_sft_core_does_not_reach_into_the_tweet_domain_except_to_judge_tweets():
    """The loss, the model and the data path import nothing of minisft/tweets. What does: the evaluation tools, the
    loop (to judge its sample tweets and save the best-of-n picker), and conditioning (its `predicted` buckets come
    from the tweet text predictor)."""
    g = graph()
    reaches = {name for name, deps in g.items() if any(d.startswith("minisft.tweets") for d in deps)
               and not name.startswith("minisft.tweets")}
    assert reaches <= {"minisft.evaluate", "minisft.training", "minisft.conditioning"}, reaches
    for core in ("minisft.model", "minisft.loss", "minisft.fast_head", "minisft.data", "minisft.records",
                 "minisft.objective", "minisft.optimizer", "minisft.sampling", "minisft.checkpoint"):
        assert not any(d.startswith("minisft.tweets") for d in g[core]), core


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_file_is_short_enough_to_read(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{modules()[name]} has {lines} lines (the guide is ~{MAX_LINES}): split it by concept"


def test_no_trainer_library_inside_the_package():
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in TRAINER_LIBRARIES for n in names), f"{name} imports {names}"
