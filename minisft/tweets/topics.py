"""Topics, styles and instruction phrasings shared by the synthetic generator and the importers.

An SFT pair is (instruction -> tweet). Real tweets arrive without an instruction, so the importers
*invent* one from a guessed topic and style; the synthetic generator asks for the same phrasings.
Sharing this module means a model fine-tuned on one source sees the same kind of prompt as on the
other, and evaluation can check "did the tweet stay on topic?" with the same keyword lists.

Everything here is deliberately simple and inspectable: keyword votes, not a classifier.
"""

import random
import re

# Topic key -> lowercase keywords. A keyword matches on word boundaries, with an optional plural "s"
# ("container" also matches "containers"). Keep keywords specific: "go" alone would match "let's go".
TOPICS: dict[str, tuple[str, ...]] = {
    "python": ("python", "pip", "pandas", "numpy", "django", "flask", "fastapi", "pytest", "venv",
               "poetry", "pydantic", "asyncio", "type hint", "list comprehension", "pythonic"),
    "javascript": ("javascript", "js", "typescript", "node.js", "nodejs", "npm", "deno", "bun",
                   "eslint", "webpack", "vite", "promise", "async/await"),
    "rust": ("rust", "rustlang", "rustacean", "cargo", "borrow checker", "tokio", "crate", "rustc", "lifetime",
             "serde", "clippy", "unsafe"),
    "golang": ("golang", "goroutine", "gopher", "gofmt", "go modules", "go build", "go test",
               "go vet", "if err != nil", "pprof", "errgroup", "go.mod"),
    "frontend": ("frontend", "front-end", "react", "css", "html", "tailwind", "vue", "svelte",
                 "next.js", "flexbox", "dom", "useeffect", "div"),
    "devops": ("devops", "docker", "dockerfile", "kubernetes", "k8s", "ci/cd", "terraform", "helm",
               "container", "github actions", "ansible", "yaml", "on-call"),
    "cloud": ("cloud", "aws", "gcp", "azure", "lambda", "serverless", "s3", "ec2", "cloud bill",
              "region", "egress"),
    "databases": ("database", "sql", "postgres", "postgresql", "mysql", "sqlite", "redis", "mongodb",
                  "orm", "index", "query", "migration"),
    "machine_learning": ("machine learning", "ml", "pytorch", "scikit-learn", "xgboost", "gradient",
                         "overfitting", "dataset", "neural net", "training run", "feature engineering",
                         "learning rate", "gpu", "machinelearning"),
    "llms": ("llm", "gpt", "chatgpt", "prompt", "rag", "fine-tuning", "fine-tune", "embedding",
             "context window", "agent", "hallucination", "token", "transformer"),
    "security": ("security", "password", "2fa", "phishing", "vulnerability", "cve", "xss", "passkey",
                 "sql injection", "encryption", "secret", "zero-day", "infosec", "cybersecurity", "api key", "breach"),
    "open_source": ("open source", "open-source", "opensource", "oss", "maintainer", "pull request",
                    "contributor", "license", "fork", "github star", "issue tracker", "changelog",
                    "sponsor", "good first issue"),
    "git": ("git", "commit", "rebase", "merge conflict", "branch", "force push", "squash",
            "cherry-pick", "git blame", "gitignore", "stash"),
    "testing": ("testing", "unit test", "tdd", "test coverage", "coverage", "flaky", "mock", "integration test",
                "e2e", "qa", "regression", "test suite", "test"),
    "career": ("career", "interview", "job hunt", "job search", "new job", "last job", "job offer",
               "hiring", "salary", "promotion", "promoted", "senior", "junior", "resume", "layoff",
               "offer", "recruiter", "negotiate", "brag document", "leetcode", "linkedin", "job hopping",
               "take-home", "techcareers"),
    "startups": ("startup", "founder", "mvp", "saas", "vc", "funding", "launch", "churn", "revenue",
                 "product-market fit", "indie hacker", "indiehackers", "buildinpublic", "paying customer",
                 "pivot"),
    "productivity": ("productivity", "productive", "deep work", "pomodoro", "meeting", "calendar",
                     "notion", "to-do", "todo list", "burnout", "remote work", "remotework", "wfh", "focus time"),
    "linux": ("linux", "bash", "terminal", "shell", "vim", "neovim", "emacs", "grep", "cron", "ssh",
              "tmux", "dotfiles", "zsh", "ubuntu", "command line"),
    "apis": ("api", "rest api", "restful", "graphql", "endpoint", "json", "webhook", "rate limit", "grpc", "openapi",
             "http", "status code", "pagination"),
    "performance": ("performance", "latency", "p99", "benchmark", "profiler", "profiling", "cache",
                    "caching", "memory leak", "flame graph", "throughput", "optimization", "webperf"),
    "system_design": ("system design", "microservice", "monolith", "scalability", "load balancer",
                      "sharding", "message queue", "kafka", "architecture", "distributed system",
                      "event-driven", "single point of failure", "systemdesign", "cap theorem",
                      "consistent hashing"),
    "mobile": ("mobile", "ios", "android", "swift", "swiftui", "kotlin", "flutter", "react native",
               "app store", "xcode", "jetpack compose", "mobiledev", "iosdev", "androiddev"),
    "data_engineering": ("data engineering", "data pipeline", "etl", "airflow", "spark", "dbt",
                         "data warehouse", "snowflake", "bigquery", "parquet", "data lake", "modern data stack",
                         "dataengineering"),
    # Last of the specific topics, so a tie ("a flaky test hid a bug") goes to the more specific technology.
    "debugging": ("debugging", "debug", "debugger", "bug", "breakpoint", "stack trace", "stacktrace", "traceback",
                  "print statement", "printf", "rubber duck", "heisenbug", "repro", "segfault", "core dump",
                  "root cause", "log line", "bug report", "bughunting"),
    # The catch-all: chosen only when no specific topic has a keyword hit (see guess_topic).
    "dev_life": ("developer", "coding", "programmer", "programming", "stack overflow", "works on my machine",
                 "code review", "side project", "tech twitter", "software engineer", "coworker", "standup"),
}
GENERAL_TOPIC = "dev_life"

# Human-readable names used inside instructions ("Write a hot take about DevOps.").
TOPIC_NAMES: dict[str, str] = {
    "python": "Python", "javascript": "JavaScript", "rust": "Rust", "golang": "Go",
    "frontend": "frontend development", "devops": "DevOps", "cloud": "cloud computing",
    "databases": "databases", "machine_learning": "machine learning", "llms": "LLMs",
    "security": "security", "open_source": "open source", "git": "Git", "testing": "software testing",
    "career": "tech careers", "startups": "startups", "productivity": "developer productivity",
    "linux": "Linux and the command line", "apis": "APIs", "performance": "performance",
    "system_design": "system design", "mobile": "mobile development",
    "data_engineering": "data engineering", "debugging": "debugging", "dev_life": "life as a developer",
}

STYLES: tuple[str, ...] = ("humor", "hot_take", "tip", "question", "story", "thread_hook", "til")
DEFAULT_STYLE = "hot_take"  # a plain statement with no marker reads as an opinion

# Style -> lowercase markers. guess_style counts hits; the style with the most wins.
STYLE_MARKERS: dict[str, tuple[str, ...]] = {
    "humor": ("lol", "lmao", "😂", "🤣", "💀", "nobody:", "me:", "pov:", "my therapist", "jk",
              "plot twist", "send help", "in this economy"),
    "hot_take": ("hot take", "unpopular opinion", "controversial", "overrated", "underrated",
                 "fight me", "change my mind", "hill i will die on", "i said what i said",
                 "nobody wants to hear", "is dead", "not a flex"),
    "tip": ("tip", "tips", "protip", "psa", "reminder:", "instead of", "cheat code", "do this", "save yourself",
            "you're welcome", "bookmark this"),
    "question": ("curious", "what's your", "how do you", "asking for a friend", "which one",
                 "genuinely asking", "poll", "would you rather", "drop it below", "help me settle"),
    "story": ("yesterday", "last week", "last year", "years ago", "this morning", "story time",
              "true story", "i remember", "back in", "once spent", "my first"),
    "thread_hook": ("🧵", "👇", "thread", "1/", "a breakdown", "let me explain", "here's what",
                    "here's how", "lessons from"),
    "til": ("til", "today i learned", "just learned", "just found out", "learned today",
            "did you know", "mind blown", "had no idea"),
}

# Instruction = frame x style phrase x topic name. 18 frames x 5 phrases = 90 phrasings per pair.
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "humor": ("a funny tweet", "a joke tweet", "a humorous tweet", "a lighthearted tweet",
              "a witty one-liner"),
    "hot_take": ("a hot take", "a spicy opinion", "an unpopular opinion", "a bold take",
                 "a contrarian tweet"),
    "tip": ("a practical tip", "a quick tip", "a useful tip", "a pro tip", "an actionable tip"),
    "question": ("a question for followers", "an engaging question", "a question that sparks replies",
                 "a poll-style question", "a question for the community"),
    "story": ("a short story", "a personal anecdote", "a short story tweet", "a story from experience",
              "a relatable anecdote"),
    "thread_hook": ("a thread hook", "the opening tweet of a thread", "a hook for a thread",
                    "a thread opener", "a teaser for a thread"),
    "til": ("a TIL tweet", "a today-I-learned tweet", "a quick TIL", "a 'today I learned' post",
            "a short learning note"),
}
FRAMES: tuple[str, ...] = (
    "Write {s} about {t}.",
    "Write {s} about {t} for developers.",
    "Draft {s} on {t}.",
    "Compose {s} about {t}.",
    "Give me {s} about {t}.",
    "Come up with {s} about {t}.",
    "Create {s} on the topic of {t}.",
    "I need {s} about {t}.",
    "Can you write {s} about {t}?",
    "Post idea: {s} about {t}.",
    "Share {s} about {t}.",
    "Generate {s} related to {t}.",
    "{S} about {t}, please.",
    "Write {s} about {t} that people will want to reply to.",
    "Write {s} about {t} in under 280 characters.",
    "Help me write {s} about {t}.",
    "Tweet about {t}: {s}.",
    "Make {s} about {t} for tech Twitter.",
)


GENERIC_PHRASES = ("a tweet", "a short post", "a tweet", "a post", "a tweet")  # a style we have no phrases for


def topic_name(topic: str) -> str:
    """How an instruction names a topic: ours by their display names, anyone else's as written ("home_baking" ->
    "home baking")."""
    return TOPIC_NAMES.get(topic) or topic.replace("_", " ").strip()


def instruction_for(topic: str, style: str, rng: random.Random) -> str:
    """A natural-language request for a tweet of this topic and style (always two rng draws).

    Any topic and style work: your own ("cooking", "rant") are phrased plainly, ours with their own phrasings.
    """
    frame = FRAMES[rng.randrange(len(FRAMES))]
    phrases = STYLE_PHRASES.get(style, GENERIC_PHRASES)
    phrase = phrases[rng.randrange(len(phrases))]
    return frame.format(s=phrase, S=phrase[0].upper() + phrase[1:], t=topic_name(topic))


def _pattern(words) -> re.Pattern:
    # Word boundaries that treat letters/digits as word characters but keep "#python", "node.js",
    # "ci/cd" matchable; "s?" lets "containers" match "container"; "z-index" is not an "index".
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9-])(?:{alts})s?(?![a-z0-9])")


_TOPIC_RE = {topic: _pattern(words) for topic, words in TOPICS.items()}


def _topic_hits(text: str, topic: str) -> int:
    return len(_TOPIC_RE[topic].findall(text.lower()))


def topic_mentioned(text: str, topic: str) -> bool:
    """True when the text contains at least one keyword of the topic (used for topic adherence)."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; expected one of {sorted(TOPICS)}")
    return _topic_hits(text, topic) > 0


def guess_topic(text: str) -> str:
    """Keyword vote over the specific topics; ties go to the earlier topic in TOPICS.

    The general topic (dev_life) only wins when no specific topic is mentioned, because words like
    "developer" or "coding" show up in tweets about everything.
    """
    best, best_hits = GENERAL_TOPIC, 0
    for topic in TOPICS:
        if topic == GENERAL_TOPIC:
            continue
        hits = _topic_hits(text, topic)
        if hits > best_hits:
            best, best_hits = topic, hits
    return best


def _marker_hits(text: str, markers) -> int:
    low = text.lower()
    hits = 0
    for m in markers:
        if m.isalnum():  # whole words only: "til" must not fire on "until"
            hits += len(re.findall(rf"(?<![a-z0-9]){re.escape(m)}(?![a-z0-9])", low))
        else:
            hits += low.count(m)
    return hits


# A real question: a sentence with a question word, or offering an either/or, that ends in "?".
# ("The fix? ..." or "In this economy?" are rhetorical and don't count.)
# Inside a sentence a "." only counts when a word follows ("node.js", "3.7").
_QUESTION_RE = re.compile(
    r"\b(?:what|how|which|who|why|where|when|do|does|did|is|are|would|should|can|could|any)\b"
    r"(?:[^.?!\n]|\.(?=\w))+\?|\bor\b(?:[^.?!\n]|\.(?=\w))*\?")
# Ties go to the style with the rarer, more specific markers ("TIL ... instead of ..." is a TIL).
_TIE_ORDER = ("til", "thread_hook", "question", "humor", "story", "hot_take", "tip")


def guess_style(text: str) -> str:
    """Marker count per style, plus two votes for "question" when a sentence really asks one."""
    scores = {style: _marker_hits(text, STYLE_MARKERS[style]) for style in STYLES}
    if _QUESTION_RE.search(re.sub(r"`[^`]*`", "", text.lower())):  # a "?" inside `code` asks nothing
        scores["question"] += 2
    best = max(_TIE_ORDER, key=lambda s: scores[s])  # max keeps the first of equal scores
    return best if scores[best] > 0 else DEFAULT_STYLE
