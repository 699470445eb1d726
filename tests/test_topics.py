"""Topic/style guessing and instruction phrasing shared by the generator and the importers."""

import random
import re

import pytest

from minisft.tweets import topics
from minisft.tweets.topics import STYLES, TOPICS, guess_style, guess_topic, instruction_for, topic_mentioned


def test_vocabulary_sizes_and_keywords_are_lowercase():
    assert len(TOPICS) >= 20 and len(STYLES) >= 6 and len(set(STYLES)) == len(STYLES)
    for topic, words in TOPICS.items():
        assert words and all(w == w.lower() and w.strip() == w for w in words), topic
    assert topics.GENERAL_TOPIC in TOPICS and topics.DEFAULT_STYLE in STYLES
    assert set(topics.TOPIC_NAMES) == set(TOPICS) and set(topics.STYLE_MARKERS) == set(STYLES)
    assert "debugging" in TOPICS and list(TOPICS)[-1] == topics.GENERAL_TOPIC  # the catch-all comes last
    assert not set(TOPICS["debugging"]) & set(TOPICS[topics.GENERAL_TOPIC])  # "bug" moved out of the catch-all


def _phrasing(instruction, topic):
    return instruction.replace(topics.TOPIC_NAMES[topic], "{t}")


def test_instruction_for_has_at_least_40_phrasings_per_pair_and_overall():
    rng = random.Random(0)
    per_pair = {instruction_for("rust", "tip", rng) for _ in range(3000)}
    assert len(per_pair) >= 40
    overall = {_phrasing(instruction_for(t, s, rng), t) for t in TOPICS for s in STYLES for _ in range(30)}
    assert len(overall) >= 40


def test_instruction_for_names_the_topic_and_is_seeded():
    for topic in TOPICS:
        for style in STYLES:
            text = instruction_for(topic, style, random.Random(7))
            assert topics.TOPIC_NAMES[topic] in text
            assert text == instruction_for(topic, style, random.Random(7))
    a = [instruction_for("python", "humor", random.Random(1)) for _ in range(3)]
    assert len(set(a)) == 1
    rng = random.Random(3)
    assert len({instruction_for("python", "humor", rng) for _ in range(20)}) > 1


def test_instruction_for_phrases_your_own_topics_and_styles():
    assert instruction_for("cooking", "tip", random.Random(0)) == instruction_for("cooking", "tip", random.Random(0))
    assert "cooking" in instruction_for("cooking", "tip", random.Random(0))
    assert "home baking" in instruction_for("home_baking", "haiku", random.Random(0))  # an unknown style too
    texts = {instruction_for("cooking", "haiku", random.Random(i)) for i in range(50)}
    assert all("cooking" in t for t in texts) and len(texts) > 10


@pytest.mark.parametrize("text, topic", [
    ("Just fixed a goroutine leak in our worker pool", "golang"),
    ("my postgres query takes 9 seconds, halp", "databases"),
    ("kubernetes pods keep restarting and the Dockerfile looks fine", "devops"),
    ("another z-index war in the CSS today", "frontend"),
    ("The borrow checker won again. #rustlang", "rust"),
    ("pandas + numpy + pytest = my whole personality", "python"),
    ("asked ChatGPT to write the prompt for my RAG pipeline", "llms"),
    ("negotiate your job offer, always", "career"),
    ("git rebase -i saved my commit history", "git"),
    ("shipping my first SwiftUI screen to the App Store", "mobile"),
    ("Write a witty tweet about debugging", "debugging"),  # the README's showcase prompt has a topic of its own
    ("three hours in the debugger and the stack trace still makes no sense", "debugging"),
    ("found the bug with one print statement lol", "debugging"),
    ("a flaky test hid a real bug", "testing"),  # a tie goes to the more specific technology
    ("code review at 5pm on a Friday", topics.GENERAL_TOPIC),
    ("Friday deploy, wish me luck", topics.GENERAL_TOPIC),
    ("", topics.GENERAL_TOPIC),
])
def test_guess_topic_on_hand_made_tweets(text, topic):
    assert guess_topic(text) == topic


def test_topic_mentioned_respects_word_boundaries_plurals_and_hashtags():
    assert topic_mentioned("I love #Python", "python")
    assert topic_mentioned("containers everywhere", "devops")  # plural of "container"
    assert topic_mentioned("Node.js in 2025?", "javascript")
    assert not topic_mentioned("I trust my team", "rust")  # "rust" inside "trust"
    assert not topic_mentioned("github is down", "git")
    assert not topic_mentioned("another z-index war", "databases")  # "z-index" is not an "index"
    with pytest.raises(ValueError, match="unknown topic"):
        topic_mentioned("hello", "cooking")


@pytest.mark.parametrize("text, style", [
    ("me: i'll just fix it real quick\n\nme 6 hours later: 💀", "humor"),
    ("Unpopular opinion: ORMs are fine. Fight me.", "hot_take"),
    ("Pro tip: use pathlib for file paths.", "tip"),
    ("What's your favorite vim plugin?", "question"),
    ("Bun, Deno or Node.js for a new project in 2025?", "question"),  # either/or; the dot in Node.js stays inside
    ("Last week a missing index took down prod for 20 minutes.", "story"),
    ("Lessons from 10 years of Go:\n\n1/ 🧵", "thread_hook"),
    ("TIL git worktree exists. Mind blown.", "til"),
    ("TIL raising prices reduces churn instead of increasing it", "til"),  # a tie goes to the rarer TIL
    ("Rust is a nice language.", topics.DEFAULT_STYLE),  # no marker at all
])
def test_guess_style_on_hand_made_tweets(text, style):
    assert guess_style(text) == style


def test_guess_style_ignores_rhetorical_and_code_question_marks():
    assert guess_style("Last week it broke. The fix? Use pathlib.") == "story"
    assert guess_style("If you're calling `.unwrap()` everywhere, do this instead: use `?` in Rust.") == "tip"
    assert guess_style("until now I never used tilde") == topics.DEFAULT_STYLE  # "til" is a whole word only


def test_guessers_always_return_a_valid_label():
    rng = random.Random(0)
    words = re.findall(r"\w+", " ".join(w for ws in TOPICS.values() for w in ws)) + ["?", "\n", "🧵", "lol"]
    for _ in range(300):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        assert guess_topic(text) in TOPICS and guess_style(text) in STYLES
