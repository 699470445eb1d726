"""Prompt templates: the text laid out before the tweet the model is asked to write.

A fine-tuned model learns one exact layout. At training time every example is `prompt + response + <|endoftext|>`;
at sampling time we feed the same prompt and let the model write the rest. So the template is part of the model:
it is saved next to every checkpoint (template.json) and read back by sampling and evaluation.

How the response joins the prompt is decided in ONE place, `response_text` below. GPT-2's byte-level BPE glues a
leading space to the word that follows it: " Hello" is one token, "Hello" another. Running text has a space after
"Tweet:", so the "plain" template's response starts with " ": the model then writes its first word with the
ordinary word-with-space tokens it saw in pre-training. After a newline no space is added, as in running text.
When sampling, decode the continuation and `.strip()` it to get the tweet back.
"""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATES: dict[str, str] = {
    "plain": "Instruction: {instruction}\nTweet:",
    "alpaca": "### Instruction:\n{instruction}\n\n### Response:\n",
    "minimal": "{instruction}\n---\n",
}
DEFAULT_TEMPLATE = "plain"


def prompt_format(name: str) -> str:
    """The format string of a template name, or a clear error listing the known names."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}: choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def format_prompt(fmt: str, instruction: str) -> str:
    # str.replace, not str.format: an instruction may contain braces, and the format may be one read from disk.
    return fmt.replace("{instruction}", instruction.strip())


def render_prompt(name: str, instruction: str) -> str:
    """The prompt the model sees for `instruction` under template `name`."""
    return format_prompt(prompt_format(name), instruction)


def response_text(prompt: str, response: str) -> str:
    """The response as it continues `prompt`: " " + response after a word or colon, as is after a newline."""
    response = response.strip()
    return response if prompt[-1:].isspace() else " " + response


def save_template(folder: str | Path, name: str, condition: dict | None = None) -> Path:
    """Write folder/template.json: {"name": ..., "prompt": ...}, and the engagement condition of a conditioned run
    (its bucket edges and line, conditioning.py) under "condition". Returns its path."""
    path = Path(folder) / "template.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"name": name, "prompt": prompt_format(name), **({"condition": condition} if condition else {})}
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return path


def load_condition(folder: str | Path) -> dict | None:
    """The engagement condition saved with a checkpoint (conditioning.Condition.to_dict), or None."""
    path = Path(folder) / "template.json"
    return json.loads(path.read_text()).get("condition") if path.exists() else None


def load_template(folder: str | Path) -> tuple[str, str]:
    """(name, prompt format) from folder/template.json; ("plain", its format) when the file is absent.

    The stored format wins over the built-in one of the same name: a checkpoint keeps working with the exact
    layout it was trained on even if TEMPLATES changes later.
    """
    path = Path(folder) / "template.json"
    if not path.exists():
        return DEFAULT_TEMPLATE, TEMPLATES[DEFAULT_TEMPLATE]
    try:
        saved = json.loads(path.read_text())
        name, fmt = saved["name"], saved["prompt"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a template file (expected {{\"name\": ..., \"prompt\": ...}}): {e}") from e
    if not isinstance(fmt, str) or "{instruction}" not in fmt:
        raise ValueError(f"{path}: prompt: must be a string containing {{instruction}}, got {fmt!r}")
    return str(name), fmt
