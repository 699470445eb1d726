"""docs/walkthrough.md can't drift from the code: every command it shows runs here, at small sizes.

A ```bash block right after a `<!-- test -->` line is run, command by command, in order (later commands use the
runs of earlier ones). Small sizes come from SMALL below, applied to each command's text: the data becomes the
first 300 records of data/tweets.jsonl, /tmp/walk-runs a temporary folder, training runs take 2 steps without
sample tweets or final evaluation, and the prompt / sample counts shrink. `python ...` commands (`python -c` and
`python - <<'EOF'` scripts too) run in this process, through each script's main() or exec (one torch import instead
of one per command); anything else runs in bash.
Every `path::name` the doc points at must exist, too.
"""

import contextlib
import importlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "walkthrough.md"
SMALL = [  # (pattern, replacement): how the doc's commands shrink to test size
    (r"data/tweets\.jsonl", "{data}"),
    (r"/tmp/walk-runs", "{runs}"),
    (r"--max-steps \d+", "--max-steps 2 --eval-samples 0"),  # no sample tweets during training
    (r"--final-eval \d+", "--final-eval 0"),  # the harness runs where the doc calls it, not after each run
    (r"(--num-prompts |num_prompts=)\d+", r"\g<1>1"),
    (r"(--num-samples |SAMPLES = )\d+", r"\g<1>2"),
]
ENTRY_POINTS = {"train.py": "minisft.training", "sample.py": "sample"}
SHELL = re.compile(r"[|;&<>$`]")


def doc_commands(text: str) -> list[tuple[str, str | None]]:
    """(command line, heredoc body or None) for every command of every <!-- test --> bash block, in order."""
    commands = []
    for block in re.findall(r"<!-- test -->\s*\n```bash\n(.*?)```", text, flags=re.S):
        lines, i = block.splitlines(), 0
        while i < len(lines):
            line = lines[i]
            i += 1
            while line.endswith("\\"):
                line, i = line[:-1] + lines[i].strip(), i + 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            heredoc = re.search(r"<<'(\w+)'\s*$", line)
            body = None
            if heredoc:
                end = lines.index(heredoc.group(1), i)
                body, i = "\n".join(lines[i:end]) + "\n", end + 1
            commands.append((line.strip(), body))
    return commands


def shrink(text: str, data: Path, runs: Path) -> str:
    for pattern, replacement in SMALL:
        text = re.sub(pattern, replacement.format(data=data, runs=runs), text)
    return text


def run_in_process(line: str, body: str | None) -> tuple[int, str]:
    """`python X args` through X's main(args), or a `python - <<'EOF'` script through exec. -> (rc, output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            if body is not None:
                exec(compile(body, "<walkthrough script>", "exec"), {"__name__": "__main__"})
                return 0, out.getvalue()
            argv = shlex.split(line)[1:]
            if argv[0] == "-c":
                exec(compile(argv[1], "<walkthrough -c>", "exec"), {"__name__": "__main__"})
                return 0, out.getvalue()
            module, args = (argv[1], argv[2:]) if argv[0] == "-m" else (ENTRY_POINTS[argv[0]], argv[1:])
            rc = importlib.import_module(module).main(args)
        except SystemExit as e:  # argparse errors and --help
            rc = e.code if isinstance(e.code, int) else 1
    return rc or 0, out.getvalue()


def in_process(line: str, body: str | None) -> bool:
    if body is not None:
        return line.startswith("python - <<")
    argv = line.split()
    if argv[0] != "python":
        return False
    return argv[1] == "-c" or (not SHELL.search(line) and (argv[1] == "-m" or argv[1] in ENTRY_POINTS))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk_data") / "tweets.jsonl"
    with open(ROOT / "data" / "tweets.jsonl") as f:
        path.write_text("".join(next(f) for _ in range(300)))
    return path


def test_doc_has_test_blocks():
    commands = doc_commands(DOC.read_text())
    assert len(commands) >= 10
    assert any(c.startswith("python -m minisft.explain") for c, _ in commands)
    assert any(c.startswith("python train.py") for c, _ in commands)


@pytest.fixture
def one_thread():
    # Small ops in many threads wait on each other whenever another process holds a core (a busy CI runner):
    # one thread ran this test 2-4x faster on a shared 2-core machine, and changes no result that is checked.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_command_runs(small_data, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(ROOT)
    for line, body in doc_commands(DOC.read_text()):
        line = shrink(line, small_data, tmp_path)
        body = shrink(body, small_data, tmp_path) if body is not None else None
        if in_process(line, body):
            rc, output = run_in_process(line, body)
        else:
            done = subprocess.run(["bash", "-c", line + ("\n" + body + "EOF\n" if body else "")], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            rc, output = done.returncode, done.stdout + done.stderr
        assert rc == 0, f"walkthrough command failed (rc {rc}): {line}\n{output[-3000:]}"


def test_every_pointer_names_real_code():
    pointers = set(re.findall(r"`((?:minisft/|tests/)?\w+\.py)::([\w.]+)`", DOC.read_text()))
    assert len(pointers) >= 15
    for path, name in sorted(pointers):
        assert (ROOT / path).is_file(), f"the walkthrough points at {path}, which does not exist"
        if path.startswith("tests/"):
            assert f"def {name}(" in (ROOT / path).read_text(), f"the walkthrough points at {path}::{name}"
            continue
        obj = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for part in name.split("."):
            assert hasattr(obj, part), f"the walkthrough points at {path}::{name}, which does not exist"
            obj = getattr(obj, part)


def test_shrink_and_parse():
    text = ("<!-- test -->\n```bash\n# a comment\npython train.py --data data/tweets.jsonl \\\n  --max-steps 800\n"
            "python - <<'EOF'\nprint(1)\nEOF\nhead -n 1 data/tweets.jsonl\n```\n```bash\nnot run\n```\n")
    commands = doc_commands(text)
    assert commands == [("python train.py --data data/tweets.jsonl --max-steps 800", None),
                        ("python - <<'EOF'", "print(1)\n"), ("head -n 1 data/tweets.jsonl", None)]
    assert shrink(commands[0][0], Path("/d.jsonl"), Path("/r")) == ("python train.py --data /d.jsonl --max-steps 2 "
                                                                     "--eval-samples 0")
    assert [in_process(*c) for c in commands] == [True, True, False]
