"""Writes the task's data: a noisy web-like corpus, a dev sample of the target text, hidden held-out text.

    python3 grader/make_data.py [ROOT]     # ROOT defaults to the task directory; deterministic

- workspace/corpus.jsonl       {"id": "d00000", "text": ...} documents of these kinds (shuffled):
    story        target-domain prose (village chronicles): what the evaluation text is like
    fable        the stories' sentence shapes with another cast (animals in a wood)
    scrambled    a story with the words of each sentence shuffled (machine-generated-looking junk)
    report       clean English of another domain (market and product reports)
    wrapped      a story inside web boilerplate (navigation, cookie banner, footer)
    boilerplate  navigation, cookie banners, footers, "related posts" alone
    dupN         near-duplicates: cluster N, one story copied many times with small edits
    foreign      German, French or Spanish prose
    mojibake     a story whose UTF-8 was decoded as cp1252 (‘ -> â€˜), with curly quotes and accents
    noisy        a story with a share of its bytes replaced by random bytes
    spam         keyword stuffing and link lists
    markup       HTML, JSON and code fragments
- workspace/data/dev_text.txt  stories, like the hidden evaluation text (different ones)
- grader/data/heldout.txt      hidden evaluation text: stories from a random seed
- grader/data/kinds.json       the kind of every corpus document (for the maintainers' analysis)
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent.parent

NAMES = [
    "Mara",
    "Tobin",
    "Elsa",
    "Hollis",
    "Wren",
    "Bram",
    "Ilse",
    "Corin",
    "Nell",
    "Oswin",
    "Petra",
    "Rudd",
    "Sable",
    "Tamsin",
    "Ulric",
    "Vesna",
    "Ada",
    "Fenn",
    "Greta",
    "Jory",
]
PLACES = [
    "the mill",
    "the river",
    "the old bridge",
    "the market",
    "the chapel",
    "the orchard",
    "the forge",
    "the well",
    "the north field",
    "the inn",
    "the harbour",
    "the hill road",
    "the bakery",
    "the granary",
    "the ferry landing",
    "the schoolhouse",
]
ROLES = [
    "the miller",
    "the smith",
    "the baker",
    "the ferryman",
    "the weaver",
    "the shepherd",
    "the innkeeper",
    "the carpenter",
    "the fisherman",
    "the old teacher",
    "the potter",
]
OBJECTS = [
    "a basket of apples",
    "the heavy lantern",
    "a bundle of letters",
    "the broken wheel",
    "a sack of flour",
    "the copper kettle",
    "a wool blanket",
    "the iron key",
    "a jar of honey",
    "the fishing net",
    "a loaf of bread",
    "the wooden chest",
    "a pair of boots",
    "the map",
]
VERBS_PAST = [
    "carried",
    "found",
    "mended",
    "sold",
    "hid",
    "painted",
    "brought",
    "lost",
    "cleaned",
    "borrowed",
    "opened",
    "dropped",
    "gave away",
    "wrapped",
    "counted",
]
MOTION = ["walked", "ran", "hurried", "wandered", "rode", "climbed", "drifted", "limped"]
TIMES = [
    "In the morning",
    "Before dawn",
    "At noon",
    "That evening",
    "Late at night",
    "On market day",
    "After the storm",
    "When the bells rang",
    "In early spring",
    "During the harvest",
    "The next day",
    "Long after supper",
]
WEATHER = [
    "the rain had stopped",
    "fog lay over the valley",
    "the wind was cold",
    "snow covered the roofs",
    "the sun was warm on the stones",
    "the river was high",
    "the sky turned grey",
]
FEELINGS = ["tired", "glad", "worried", "curious", "angry", "quiet", "hopeful", "restless", "proud"]
FABLE_NAMES = [
    "the fox",
    "the badger",
    "the old owl",
    "the hare",
    "the crow",
    "the young wolf",
    "the mole",
    "the heron",
    "the hedgehog",
    "the stag",
]
FABLE_PLACES = [
    "the hollow oak",
    "the bramble patch",
    "the pond",
    "the deep wood",
    "the fern bank",
    "the mossy stone",
    "the clearing",
    "the burrow",
    "the meadow edge",
]
FABLE_OBJECTS = [
    "a ripe acorn",
    "the silver feather",
    "a hazelnut",
    "the round pebble",
    "a beetle",
    "the bright berry",
    "a twist of straw",
    "the lost egg",
]
SAYINGS = [
    "We should leave before the light goes",
    "I never asked for this",
    "Bring it to the mill",
    "Nobody crosses the bridge after dark",
    "The harvest will be late this year",
    "Have you seen my brother",
    "It was here yesterday",
    "Keep the lantern burning",
    "Tell the others to wait",
    "This is not the first time",
]

REPORT_NOUNS = [
    "revenue",
    "operating margin",
    "quarterly output",
    "shipment volume",
    "net income",
    "market share",
    "unit cost",
    "order backlog",
    "gross profit",
    "subscriber base",
]
COMPANIES = [
    "Brightline Systems",
    "Corvex Holdings",
    "Delmar Logistics",
    "Northgate Energy",
    "Pallas Robotics",
    "Quintel Foods",
    "Sterling Polymers",
    "Vantor Media",
]
REPORT_VERBS = [
    "rose",
    "fell",
    "climbed",
    "declined",
    "increased",
    "slipped",
    "improved",
    "weakened",
]
ANALYST = [
    "analysts said",
    "the company reported",
    "according to the filing",
    "executives noted",
    "the board confirmed",
    "industry data showed",
]
PRODUCTS = [
    "the new controller",
    "its cloud platform",
    "the compact sensor",
    "the entry model",
    "the premium line",
    "its logistics software",
    "the battery module",
]

GERMAN = [
    "der",
    "die",
    "das",
    "und",
    "ist",
    "nicht",
    "mit",
    "auf",
    "für",
    "eine",
    "Haus",
    "Stadt",
    "wurde",
    "werden",
    "über",
    "nach",
    "auch",
    "sich",
    "Zeit",
    "Jahr",
    "große",
    "Straße",
    "schön",
    "Wasser",
    "gehen",
    "kommen",
    "heute",
    "morgen",
    "immer",
    "zwischen",
    "Brücke",
    "Mühle",
]
FRENCH = [
    "le",
    "la",
    "les",
    "et",
    "est",
    "dans",
    "une",
    "pour",
    "avec",
    "sur",
    "maison",
    "ville",
    "été",
    "très",
    "après",
    "aussi",
    "toujours",
    "entre",
    "rivière",
    "pont",
    "moulin",
    "marché",
    "aujourd'hui",
    "demain",
    "beaucoup",
    "petit",
    "grand",
    "où",
    "château",
    "fenêtre",
]
SPANISH = [
    "el",
    "la",
    "los",
    "y",
    "es",
    "en",
    "una",
    "para",
    "con",
    "sobre",
    "casa",
    "ciudad",
    "muy",
    "después",
    "también",
    "siempre",
    "entre",
    "río",
    "puente",
    "molino",
    "mercado",
    "hoy",
    "mañana",
    "mucho",
    "pequeño",
    "grande",
    "dónde",
    "año",
    "niño",
    "corazón",
]

NAV = [
    "Home | About | Contact | Blog | Shop",
    "Skip to main content",
    "Menu  Search  Login  Register",
    "You are here: Home > News > Local",
    "Sign up for our newsletter!",
    "Share: Facebook Twitter Email",
    "Subscribe to get the latest posts delivered to your inbox.",
]
COOKIE = [
    "We use cookies to improve your experience. By continuing to browse you agree to our use of cookies.",
    "Accept all cookies   Manage preferences   Reject",
    "This site uses cookies. Learn more in our Privacy Policy.",
]
FOOTER = [
    "© 2024 Valley Gazette. All rights reserved.",
    "Privacy Policy | Terms of Use | Sitemap",
    "Powered by WordPress",
    "Back to top ^",
    "Related posts:",
    "Leave a comment",
    "Posted in Uncategorized | 3 Comments",
    "Tags: village, news, local, history",
]
SPAM_WORDS = [
    "cheap",
    "best",
    "price",
    "buy",
    "now",
    "free",
    "shipping",
    "discount",
    "deal",
    "online",
    "pills",
    "casino",
    "win",
    "bonus",
    "click",
    "here",
    "offer",
    "limited",
    "sale",
    "top",
]


def sentence_story(r: random.Random, cast: tuple[list[str], list[str], list[str]] | None = None) -> str:
    names, places, objects = cast or (NAMES, PLACES, OBJECTS)
    a, b = r.sample(names, 2)
    roll = r.random()
    if roll < 0.16:
        return f"{r.choice(TIMES)}, {a} {r.choice(MOTION)} to {r.choice(places)}."
    if roll < 0.32:
        return f"{a} {r.choice(VERBS_PAST)} {r.choice(objects)} near {r.choice(places)}."
    if roll < 0.44:
        return f"{r.choice(TIMES)} {r.choice(WEATHER)}, and {a} felt {r.choice(FEELINGS)}."
    if roll < 0.56:
        return f'"{r.choice(SAYINGS)}," said {a}.'
    if roll < 0.68:
        return f"{a} asked {r.choice(ROLES)} about {r.choice(objects)}, but nobody knew."
    if roll < 0.78:
        return f"{b} and {a} {r.choice(MOTION)} past {r.choice(places)} while {r.choice(WEATHER)}."
    if roll < 0.88:
        count = r.randint(2, 40)
        return (
            f"{r.choice(ROLES).capitalize()} had kept {count} "
            f"{r.choice(['sheep', 'barrels', 'lamps', 'coins', 'letters'])} since the winter."
        )
    return f"{a} {r.choice(VERBS_PAST)} {r.choice(objects)} for {b}, who was {r.choice(FEELINGS)}."


def story(r: random.Random) -> str:
    paragraphs = []
    for _ in range(r.randint(2, 5)):
        paragraphs.append(" ".join(sentence_story(r) for _ in range(r.randint(3, 7))))
    return "\n\n".join(paragraphs)


def fable(r: random.Random) -> str:
    """The stories' sentence shapes with another cast: animals in a wood."""
    cast = (FABLE_NAMES, FABLE_PLACES, FABLE_OBJECTS)
    paragraphs = []
    for _ in range(r.randint(2, 5)):
        sentences = [sentence_story(r, cast) for _ in range(r.randint(3, 7))]
        paragraphs.append(" ".join(sentence[0].upper() + sentence[1:] for sentence in sentences))
    return "\n\n".join(paragraphs)


def sentence_report(r: random.Random) -> str:
    company = r.choice(COMPANIES)
    roll = r.random()
    if roll < 0.35:
        return (
            f"{company}'s {r.choice(REPORT_NOUNS)} {r.choice(REPORT_VERBS)} {r.randint(1, 19)}.{r.randint(0, 9)} "
            f"percent to {r.randint(2, 900)} million dollars in the "
            f"{r.choice(['first', 'second', 'third', 'fourth'])} quarter, {r.choice(ANALYST)}."
        )
    if roll < 0.6:
        return (
            f"Demand for {r.choice(PRODUCTS)} {r.choice(REPORT_VERBS)} as customers delayed orders, "
            f"{r.choice(ANALYST)}."
        )
    if roll < 0.8:
        return (
            f"The {r.choice(REPORT_NOUNS)} is expected to reach {r.randint(10, 99)} billion by {r.randint(2025, 2031)}."
        )
    return (
        f"Shares of {company} {r.choice(REPORT_VERBS)} {r.randint(1, 12)} percent after "
        f"{r.choice(PRODUCTS)} was announced."
    )


def report(r: random.Random) -> str:
    return "\n\n".join(" ".join(sentence_report(r) for _ in range(r.randint(3, 6))) for _ in range(r.randint(2, 4)))


def foreign(r: random.Random) -> str:
    words = r.choice([GERMAN, FRENCH, SPANISH])
    sentences = []
    for _ in range(r.randint(8, 25)):
        chosen = [r.choice(words) for _ in range(r.randint(5, 12))]
        sentences.append(" ".join(chosen).capitalize() + r.choice([".", ".", ".", "?", "!"]))
    return " ".join(sentences)


def boilerplate(r: random.Random) -> str:
    lines = r.sample(NAV, 3) + r.sample(COOKIE, 1) + r.sample(FOOTER, 4)
    r.shuffle(lines)
    return "\n".join(lines)


def wrapped(r: random.Random) -> str:
    header = "\n".join(r.sample(NAV, 2) + r.sample(COOKIE, 1))
    footer = "\n".join(r.sample(FOOTER, 4))
    return f"{header}\n\n{story(r)}\n\n{footer}"


def mojibake(r: random.Random) -> str:
    text = story(r).replace('"', "\u201c", 1).replace("'", "\u2019")
    text = text.replace(" cafe", " café").replace("said ", r.choice(["said ", "said ", "murmured\u2014"]))
    text = text.replace('"', "\u201d").replace(" and ", r.choice([" and ", " and ", " & ", " – "]))
    return text.encode("utf-8").decode("cp1252", errors="replace")


def noisy(r: random.Random) -> str:
    chars = list(story(r))
    share = r.uniform(0.05, 0.3)
    for i in range(len(chars)):
        if r.random() < share:
            chars[i] = chr(r.choice([r.randint(0, 31), r.randint(127, 255), r.randint(0x370, 0x3FF)]))
    return "".join(chars)


def spam(r: random.Random) -> str:
    lines = []
    for _ in range(r.randint(6, 20)):
        if r.random() < 0.3:
            lines.append(
                f"http://www.{r.choice(SPAM_WORDS)}{r.choice(SPAM_WORDS)}{r.randint(1, 99)}.com/{r.choice(SPAM_WORDS)}"
            )
        else:
            lines.append(
                " ".join(r.choice(SPAM_WORDS) for _ in range(r.randint(4, 12))).upper()
                if r.random() < 0.3
                else " ".join(r.choice(SPAM_WORDS) for _ in range(r.randint(4, 12)))
            )
    return "\n".join(lines)


def markup(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.4:
        items = "".join(
            f'<li class="item-{i}"><a href="/p/{r.randint(100, 999)}">{r.choice(NAMES)}</a></li>'
            for i in range(r.randint(3, 15))
        )
        return f'<div id="main"><ul class="nav">{items}</ul></div>\n<script>var x = {r.randint(0, 99)};</script>'
    if roll < 0.7:
        rows = [
            {"id": r.randint(1, 9999), "name": r.choice(NAMES), "score": round(r.random(), 3)}
            for _ in range(r.randint(5, 20))
        ]
        return json.dumps({"data": rows, "page": r.randint(1, 9)})
    lines = [f"def f_{i}(x):\n    return x * {r.randint(2, 9)} + {r.randint(0, 99)}" for i in range(r.randint(3, 10))]
    return "\n\n".join(lines)


def scrambled(r: random.Random) -> str:
    """A story with the words of every sentence shuffled: the stories' word counts, no word order."""
    paragraphs = []
    for paragraph in story(r).split("\n\n"):
        sentences = []
        for sentence in re.findall(r"[^.]+\.", paragraph):
            tokens = sentence.strip().rstrip(".").split()
            r.shuffle(tokens)
            sentences.append(" ".join(tokens) + ".")
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def near_copy(text: str, r: random.Random) -> str:
    words = text.split(" ")
    for _ in range(r.randint(1, 4)):
        i = r.randrange(len(words))
        words[i] = r.choice(NAMES + ["the", "a", "old", "small"])
    prefix = r.choice(["", "", "Repost: ", "UPDATED ", "(copy) "])
    return prefix + " ".join(words)


KIND_COUNTS = {
    "story": 180,
    "fable": 300,
    "report": 500,
    "wrapped": 150,
    "boilerplate": 120,
    "foreign": 220,
    "mojibake": 90,
    "noisy": 90,
    "spam": 110,
    "markup": 110,
    "scrambled": 30,
}
DUP_SOURCES, DUP_COPIES = 12, (6, 14)
MAKERS = {
    "story": story,
    "fable": fable,
    "report": report,
    "wrapped": wrapped,
    "boilerplate": boilerplate,
    "foreign": foreign,
    "mojibake": mojibake,
    "noisy": noisy,
    "spam": spam,
    "markup": markup,
    "scrambled": scrambled,
}


def make_corpus(seed: str) -> list[tuple[str, str]]:
    """(kind, text) in corpus order."""
    r = random.Random(seed)
    documents = [(kind, MAKERS[kind](r)) for kind, count in KIND_COUNTS.items() for _ in range(count)]
    for cluster in range(DUP_SOURCES):
        source = story(r)
        documents += [(f"dup{cluster}", near_copy(source, r)) for _ in range(r.randint(*DUP_COPIES))]
    r.shuffle(documents)
    return documents


def stories_text(seed: str, size: int) -> str:
    r = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        parts.append(story(r))
        total += len(parts[-1]) + 2
    return "\n\n".join(parts)[:size]


CORPUS_SEED = "corpus"


def corpus_documents() -> dict[str, str]:
    """Document id -> text, exactly as written to workspace/corpus.jsonl (the grader's copy)."""
    return {f"d{index:05d}": text for index, (_, text) in enumerate(make_corpus(CORPUS_SEED))}


def main(root: Path = TASK_DIR) -> None:
    corpus = make_corpus(CORPUS_SEED)
    (root / "workspace" / "data").mkdir(parents=True, exist_ok=True)
    (root / "grader" / "data").mkdir(parents=True, exist_ok=True)
    with open(root / "workspace" / "corpus.jsonl", "w", encoding="utf-8") as out:
        out.writelines(
            json.dumps({"id": f"d{index:05d}", "text": text}) + "\n" for index, (_, text) in enumerate(corpus)
        )
    kinds = {f"d{index:05d}": kind for index, (kind, _) in enumerate(corpus)}
    (root / "grader" / "data" / "kinds.json").write_text(json.dumps(kinds, indent=0), encoding="utf-8")
    (root / "workspace" / "data" / "dev_text.txt").write_text(stories_text("dev", 20_000), encoding="utf-8")
    # A random seed, so the public dev generator code (if it leaked) would not reproduce it.
    (root / "grader" / "data" / "heldout.txt").write_text(
        stories_text("c41d7a9e25f08b6e93a1d4c7f0e2b859", 40_000), encoding="utf-8"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else TASK_DIR)
