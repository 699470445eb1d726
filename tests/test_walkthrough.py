"""docs/walkthrough.md can't drift from the code: every command on the page runs here, at the page's own sizes, and
every output the page shows is regenerated and compared with it.

The page marks what is tested: a ```bash block right after a `<!-- test -->` line is run, command by command, in
order (later commands use the runs of earlier ones), and the block right after an `<!-- output -->` line that
follows it (a ```text block, or a markdown table) is what those commands print. A shown line `...` stands for any
number of lines (rows cut for length). Everything else must match, with a tolerance for numbers:

  - whole numbers (token ids, counts, steps) must be equal;
  - decimals may differ by 1% of the shown value, or by one unit in the last digit shown, whichever is larger:
    floating-point sums round differently with another thread count, and the page should not break over that;
  - the end of a training run's plan line (the machine's free memory, its matmul rate, the time estimate) is not
    compared: it belongs to the machine, not to the code.

`python tests/test_walkthrough.py --update` regenerates the page: it runs everything the same way and writes the
new outputs into the output blocks (keeping the `...` cuts where they are). Then read the prose around them again.
The page's training runs are independent, so they run two at a time first (`python train.py` in a subprocess each,
one thread each); everything else runs in this process (one torch import instead of one per command).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "walkthrough.md"
RUNS = "/tmp/walk-runs"  # the page's run folder; the test swaps in a temporary one and back in the output
ENTRY_POINTS = {"train.py": "minisft.training", "sample.py": "sample"}
SHELL = re.compile(r"[|;&<>$`]")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
RTOL = 0.01
MACHINE = re.compile(r" \(free: [\d.]+ GiB\); time: .*$")  # the plan line's machine-dependent end: not compared
PARALLEL = 2


@dataclass
class Block:
    commands: list[tuple[str, str | None]]  # (command line, heredoc body or None)
    shown: list[str] | None = None  # the output lines the page shows, or None
    span: tuple[int, int] | None = None  # where those lines are in the page (line indices), for --update
    got: list[str] = field(default_factory=list)


def parse(text: str) -> list[Block]:
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() != "<!-- test -->":
            i += 1
            continue
        assert lines[i + 1] == "```bash", f"line {i + 2}: a <!-- test --> line must be followed by ```bash"
        end = lines.index("```", i + 2)
        block = Block(commands(lines[i + 2:end]))
        i = end + 1
        if i < len(lines) and lines[i].strip() == "<!-- output -->":
            if lines[i + 1] == "```text":
                close = lines.index("```", i + 2)
                block.span = (i + 2, close)
            else:  # a markdown table: its rows, up to the first line that is not one
                close = i + 1
                while close < len(lines) and lines[close].startswith("|"):
                    close += 1
                block.span = (i + 1, close)
            block.shown = lines[block.span[0]:block.span[1]]
            i = close
        blocks.append(block)
    return blocks


def commands(lines: list[str]) -> list[tuple[str, str | None]]:
    """(command line, heredoc body or None) for every command of a bash block, in order."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\"):
            line, i = line[:-1] + lines[i].strip(), i + 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        body = None
        heredoc = re.search(r"<<'(\w+)'\s*$", line)
        if heredoc:
            end = lines.index(heredoc.group(1), i)
            body, i = "\n".join(lines[i:end]) + "\n", end + 1
        out.append((line.strip(), body))
    return out


# ------------------------------------------------------------------------------------------------ running

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
    return argv[0] == "python" and (argv[1] == "-c" or (not SHELL.search(line) and (argv[1] == "-m" or
                                                                                    argv[1] in ENTRY_POINTS)))


def run_subprocess(line: str, body: str | None = None) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "-c", line + ("\n" + body + "EOF\n" if body else "")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout + done.stderr


def run_page(blocks: list[Block], runs: Path) -> None:
    """Run every block's commands (training runs first, PARALLEL at a time); fill in each block's `got` lines."""
    swap = lambda text: text.replace(RUNS, str(runs))  # noqa: E731
    training = [swap(line) for b in blocks for line, body in b.commands if line.startswith("python train.py")]
    with ThreadPoolExecutor(PARALLEL) as pool:
        trained = dict(zip(training, pool.map(run_subprocess, training)))
    for block in blocks:
        output = ""
        for line, body in block.commands:
            line, body = swap(line), swap(body) if body is not None else None
            if line in trained:
                rc, text = trained[line]
            elif in_process(line, body):
                rc, text = run_in_process(line, body)
            else:
                rc, text = run_subprocess(line, body)
            assert rc == 0, f"walkthrough command failed (rc {rc}): {line}\n{text[-3000:]}"
            output += text
        block.got = output.replace(str(runs), RUNS).rstrip("\n").splitlines()


# ------------------------------------------------------------------------------------------------ comparing

def same_line(shown: str, got: str) -> bool:
    """Equal text around the numbers, and each number equal within the page's tolerance."""
    shown, got = MACHINE.sub("", shown), MACHINE.sub("", got)
    shown_nums, got_nums = NUMBER.findall(shown), NUMBER.findall(got)
    if NUMBER.sub("#", shown).split() != NUMBER.sub("#", got).split() or len(shown_nums) != len(got_nums):
        return False
    for a, b in zip(shown_nums, got_nums):
        if "." not in a and "e" not in a:
            if a != b:
                return False
            continue
        unit = 10.0 ** -len(a.split(".")[1].split("e")[0]) if "." in a else 0.0
        if abs(float(a) - float(b)) > max(RTOL * abs(float(a)), unit * 1.0001):
            return False
    return True


def same_words(shown: str, got: str) -> bool:
    """The same line but for its numbers: how --update finds where each `...` cut of the page falls."""
    return NUMBER.sub("#", MACHINE.sub("", shown)).split() == NUMBER.sub("#", MACHINE.sub("", got)).split()


def match(shown: list[str], got: list[str], same=same_line) -> list[int | None] | None:
    """For each shown line, the index of the got line it matches (None for a `...`), or None when they differ.
    A `...` line takes as few got lines as it can, so the lines after it anchor where the cut ends."""
    def go(i, j):
        if i == len(shown):
            return [] if j == len(got) else None
        if shown[i].strip() == "...":
            for k in range(j, len(got) + 1):
                rest = go(i + 1, k)
                if rest is not None:
                    return [None] + rest
            return None
        if j < len(got) and same(shown[i], got[j]):
            rest = go(i + 1, j + 1)
            return None if rest is None else [j] + rest
        return None
    return go(0, 0)


def differences(blocks: list[Block]) -> list[str]:
    out = []
    for n, block in enumerate(blocks):
        if block.shown is not None and match(block.shown, block.got) is None:
            first = block.commands[0][0]
            out.append(f"output {n + 1} (`{first[:80]}`) no longer matches the page:\n--- shown\n"
                       + "\n".join(block.shown) + "\n--- now\n" + "\n".join(block.got))
    return out


def updated(text: str, blocks: list[Block]) -> str:
    """The page with every output block replaced by what its commands print now. `...` cuts stay where they are
    when the new output has the same lines but for their numbers; otherwise the lines before the first cut and
    after the last are kept."""
    lines = text.splitlines()
    for block in reversed([b for b in blocks if b.shown is not None]):
        got, shown = block.got, block.shown
        cuts = [k for k, line in enumerate(shown) if line.strip() == "..."]
        matched = match(shown, got, same_words)  # the new numbers, in the page's own cuts
        if matched is not None:
            new = ["..." if j is None else got[j] for j in matched]
        elif cuts and cuts[0] + len(shown) - cuts[-1] - 1 < len(got):
            head, tail = cuts[0], len(shown) - cuts[-1] - 1
            new = got[:head] + ["..."] + got[len(got) - tail:]
        else:
            new = got
        lines[block.span[0]:block.span[1]] = new
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the tests

def test_the_page_parses_into_tested_blocks():
    blocks = parse(DOC.read_text())
    assert len(blocks) >= 12 and sum(b.shown is not None for b in blocks) >= 10
    assert any(line.startswith("python -m minisft.explain") for b in blocks for line, _ in b.commands)
    assert any(line.startswith("python train.py") for b in blocks for line, _ in b.commands)


def test_every_shown_output_is_what_the_commands_print(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = parse(DOC.read_text())
    run_page(blocks, tmp_path)
    problems = differences(blocks)
    assert not problems, ("docs/walkthrough.md is stale (regenerate it with python tests/test_walkthrough.py "
                          "--update, then reread its prose):\n\n" + "\n\n".join(problems))


def test_every_pointer_names_real_code():
    pointers = set(re.findall(r"`((?:minisft/|tests/)?[\w/]+\.py)::([\w.]+)`", DOC.read_text()))
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


def test_the_comparison_itself():
    assert same_line("val loss 2.086 (ppl 8.5) | 800 steps", "val loss 2.101 (ppl 8.6) | 800 steps")
    assert not same_line("val loss 2.086", "val loss 2.200")  # 5% off
    assert not same_line("800 steps", "801 steps")  # whole numbers are exact
    assert not same_line("val loss 2.086", "val  loss 2.086 nats")  # the words must match
    assert same_line("  0  'Instruction'     282", "0 'Instruction' 282")  # column widths may move
    assert match(["a", "...", "z"], ["a", "b", "c", "z"]) == [0, None, 3]
    assert match(["a", "...", "z"], ["a", "z"]) == [0, None, 1]
    plan = "memory plan: ~0.7 GiB peak, of weights 0.01 (free: 21.5 GiB); time: ~14 min for 6 epochs (39 GFLOP/s)"
    assert same_line(plan, plan.replace("21.5", "3.2").replace("14 min", "2 h"))
    assert not same_line(plan, plan.replace("~0.7", "~0.9"))  # the plan itself is compared
    assert match(["a", "b"], ["a", "b", "c"]) is None
    text = "x\n<!-- test -->\n```bash\necho 1\n```\n<!-- output -->\n```text\n1\n...\n9\n```\n"
    (block,) = parse(text)
    assert block.commands == [("echo 1", None)] and block.shown == ["1", "...", "9"]
    block.got = [str(i) for i in range(1, 10)]
    assert match(block.shown, block.got) is not None
    assert updated(text, [block]) == text  # nothing changed: the page stays as it is
    block.got = ["1", "2", "3", "10"]
    assert updated(text, [block]).splitlines()[7:10] == ["1", "...", "10"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_walkthrough.py --update   (regenerates docs/walkthrough.md's outputs)")
    import tempfile

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    text = DOC.read_text()
    blocks = parse(text)
    with tempfile.TemporaryDirectory() as runs:
        run_page(blocks, Path(runs))
    DOC.write_text(updated(text, blocks))
    print("\n\n".join(differences(blocks)) or "every output already matched")
