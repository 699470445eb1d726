"""Templates: the layouts, how the response joins the prompt, and template.json."""

import pytest

from minisft.templates import TEMPLATES, load_template, render_prompt, response_text, save_template
from minisft.tokenizer import train_tokenizer

CORPUS = ["Instruction: Write a tweet about Rust\nTweet: Rust is fast. Hello world!",
          "### Instruction:\nGive a tip\n\n### Response:\nHello there, use git bisect.",
          "Ask about databases\n---\nHello: which index do you regret? 42 times."] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, vocab_size=350)


def test_three_templates_render_the_instruction():
    assert {"plain", "alpaca", "minimal"} <= set(TEMPLATES)
    assert render_prompt("plain", "  Write about {braces}  ") == "Instruction: Write about {braces}\nTweet:"
    assert render_prompt("alpaca", "x") == "### Instruction:\nx\n\n### Response:\n"
    with pytest.raises(ValueError, match="plain"):
        render_prompt("chatml", "x")


def test_the_response_gets_a_space_only_after_a_word():
    assert response_text(render_prompt("plain", "x"), " Hello ") == " Hello"
    assert response_text(render_prompt("alpaca", "x"), "Hello") == "Hello"
    assert response_text(render_prompt("minimal", "x"), "Hello") == "Hello"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("response", ["Hello there, use git bisect.", "42 times", "🚀 ship it", "#rust is fast"])
def test_the_join_is_a_natural_token_boundary(tok, name, response):
    # Encoding prompt and response separately gives the same ids as encoding the joined text: the model sees
    # the response tokens it would see in running text, and generation continues the prompt naturally.
    prompt = render_prompt(name, "Write a tweet")
    joined = response_text(prompt, response)
    assert tok.encode(prompt) + tok.encode(joined) == tok.encode(prompt + joined)


def test_why_the_space_belongs_to_the_response(tok):
    # The tempting alternative, a template ending in "Tweet: " with the response glued on, splits " Hello" into
    # " " + "Hello": ids the model never sees in running text.
    assert tok.encode("Tweet: ") + tok.encode("Hello") != tok.encode("Tweet: Hello")
    assert tok.encode("Tweet:") + tok.encode(" Hello") == tok.encode("Tweet: Hello")


def test_save_and_load_template(tmp_path):
    assert load_template(tmp_path) == ("plain", TEMPLATES["plain"])  # no file: the default
    save_template(tmp_path, "alpaca")
    assert load_template(tmp_path) == ("alpaca", TEMPLATES["alpaca"])
    with pytest.raises(ValueError, match="unknown template"):
        save_template(tmp_path, "nope")
    (tmp_path / "template.json").write_text('{"name": "x", "prompt": "no placeholder"}')
    with pytest.raises(ValueError, match=r"template\.json: prompt"):
        load_template(tmp_path)
    (tmp_path / "template.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"template\.json"):
        load_template(tmp_path)
