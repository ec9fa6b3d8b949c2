"""A small, noisy question-answering model over a fictional world.

The world holds countries, cities, people and companies, linked by relations (the capital of a
country, the founder of a company, ...) and carrying numbers (populations, years). The model
answers plain-English questions about it through `NoisyModel.ask(prompt) -> str` and behaves like
a weak language model:

- it is fairly reliable on a single fact, and some facts it tends to confuse with a specific
  wrong value;
- it is much worse when one question chains several facts together;
- it wraps answers in varying formats ("The answer is X.", "**X**", "1,234", "twenty-one", ...)
  and sometimes mentions a wrong value next to the one it means;
- it can check a stated answer ("Is Quellport the capital of Zorbia?").

Its replies are a deterministic function of (normalised prompt, model key, seed): asking the same
prompt again returns the same reply, a differently worded prompt is a fresh draw.

World files are JSON (`World.save` / `World.load`); question files are JSON lines with
"id", "question", "answer" and "hops" (`write_questions` / `load_questions`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Value = str | int  # an entity's name or a number

MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class Relation:
    name: str
    subjects: tuple[str, ...]  # entity types the relation applies to
    value: str  # an entity type, or "number"
    nouns: tuple[str, ...]  # "the {noun} of X"
    clauses: tuple[str, ...] = ()  # other noun phrases, "{x}" marks the subject
    questions: tuple[str, ...] = ()  # whole questions, "{x}" marks the subject


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation(
            "capital",
            ("country",),
            "city",
            ("capital", "capital city"),
            questions=("which city is the capital of {x}",),
        ),
        Relation(
            "leader",
            ("country",),
            "person",
            ("leader", "head of state"),
            questions=("who leads {x}",),
        ),
        Relation(
            "country",
            ("city",),
            "country",
            ("country",),
            clauses=("the country where {x} is located",),
            questions=("in which country is {x}", "which country is {x} in"),
        ),
        Relation("mayor", ("city",), "person", ("mayor",)),
        Relation(
            "birthplace",
            ("person",),
            "city",
            ("birthplace", "hometown"),
            clauses=("the city where {x} was born",),
            questions=("where was {x} born", "in which city was {x} born"),
        ),
        Relation(
            "employer",
            ("person",),
            "company",
            ("employer",),
            clauses=("the company that employs {x}",),
            questions=("which company employs {x}", "who employs {x}"),
        ),
        Relation(
            "founder",
            ("company",),
            "person",
            ("founder",),
            clauses=("the person who founded {x}",),
            questions=("who founded {x}",),
        ),
        Relation(
            "headquarters",
            ("company",),
            "city",
            ("headquarters", "home city"),
            clauses=("the city where {x} is headquartered",),
            questions=("where is {x} headquartered",),
        ),
        Relation(
            "population",
            ("country", "city"),
            "number",
            ("population",),
            questions=("how many people live in {x}",),
        ),
        Relation(
            "founded",
            ("country", "company"),
            "number",
            ("founding year",),
            clauses=("the year {x} was founded",),
            questions=("when was {x} founded", "in what year was {x} founded"),
        ),
        Relation(
            "birth_year",
            ("person",),
            "number",
            ("birth year", "year of birth"),
            clauses=("the year {x} was born",),
            questions=("when was {x} born", "in what year was {x} born"),
        ),
        Relation(
            "districts",
            ("city",),
            "number",
            ("number of districts",),
            questions=("how many districts does {x} have",),
        ),
    )
}

# Question openings that take any noun phrase ("what is the capital of X").
GENERIC_QUESTIONS = (
    "what is {x}",
    "what's {x}",
    "who is {x}",
    "which city is {x}",
    "which country is {x}",
    "which company is {x}",
    "name {x}",
    "{x}",
)
# Stating one of these anywhere in a prompt makes tidy answers more likely.
TERSE_PHRASES = (
    "only the",
    "just the",
    "one word",
    "no explanation",
    "nothing else",
    "answer only",
    "only answer",
    "be brief",
    "briefly",
    "concise",
)
POLITE_OPENINGS = (
    "please",
    "can you tell me",
    "could you tell me",
    "tell me",
    "do you know",
    "i want to know",
    "i'd like to know",
    "i wonder",
)


# ---------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    seed: str
    entities: dict[str, str]  # name -> type
    facts: dict[tuple[str, str], Value]  # (subject, relation) -> value

    def names_of(self, entity_type: str) -> list[str]:
        return [name for name, kind in self.entities.items() if kind == entity_type]

    def resolve(self, start: str, relations: tuple[str, ...]) -> Value:
        value: Value = start
        for relation in relations:
            value = self.facts[(str(value), relation)]
        return value

    def type_of(self, start: str, relations: tuple[str, ...]) -> str | None:
        """The type a chain of relations from `start` ends in, or None if it does not compose."""
        kind = self.entities[start]
        for relation in relations:
            if kind not in RELATIONS[relation].subjects:
                return None
            kind = RELATIONS[relation].value
        return kind

    def save(self, path: Path) -> None:
        facts = [[s, r, v] for (s, r), v in sorted(self.facts.items())]
        data = {"seed": self.seed, "entities": self.entities, "facts": facts}
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> World:
        data = json.loads(path.read_text(encoding="utf-8"))
        facts = {(s, r): v for s, r, v in data["facts"]}
        return cls(seed=data["seed"], entities=dict(data["entities"]), facts=facts)


_ONSETS = [
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "z",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "x", "m"]
_COUNTRY_ENDINGS = ["ia", "land", "mark", "ora", "esh"]
_CITY_ENDINGS = ["port", "hold", "ford", "burg", "vale", "mere", "wick", "haven", "gate"]
_SURNAME_ENDINGS = ["", "son", "ell", "an", "ley"]
_COMPANY_KINDS = ["Labs", "Works", "Industries", "Systems", "Foods", "Motors", "Textiles", "Mining"]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def generate_world(
    seed: str,
    *,
    countries: int = 10,
    cities_per_country: int = 3,
    people: int = 70,
    companies: int = 25,
) -> World:
    """A world with unique names; leaders, mayors and founders are distinct people."""
    rng = random.Random(f"world:{seed}")
    used: set[str] = set()

    def fresh(make: Callable[[], str]) -> str:
        while True:
            name = make()
            if name.lower() not in used:
                used.add(name.lower())
                return name

    country_names = [fresh(lambda: _word(rng, 2) + rng.choice(_COUNTRY_ENDINGS)) for _ in range(countries)]
    city_names = [
        fresh(lambda: _word(rng, 2) + rng.choice(_CITY_ENDINGS)) for _ in range(countries * cities_per_country)
    ]
    person_names = [
        fresh(lambda: f"{_word(rng, 2)} {_word(rng, 2)}{rng.choice(_SURNAME_ENDINGS)}") for _ in range(people)
    ]
    company_names = [fresh(lambda: f"{_word(rng, 2)} {rng.choice(_COMPANY_KINDS)}") for _ in range(companies)]
    if len(person_names) < countries + len(city_names) + companies:
        raise ValueError("need at least one person per leader, mayor and founder")

    entities = {n: "country" for n in country_names}
    entities |= {n: "city" for n in city_names}
    entities |= {n: "person" for n in person_names}
    entities |= {n: "company" for n in company_names}
    facts: dict[tuple[str, str], Value] = {}
    office_holders = rng.sample(person_names, countries + len(city_names) + companies)
    for i, country in enumerate(country_names):
        own_cities = city_names[i * cities_per_country : (i + 1) * cities_per_country]
        for city in own_cities:
            facts[(city, "country")] = country
        facts[(country, "capital")] = own_cities[0]
        facts[(country, "leader")] = office_holders.pop()
        facts[(country, "population")] = rng.randint(800_000, 90_000_000)
        facts[(country, "founded")] = rng.randint(1100, 1950)
    for city in city_names:
        facts[(city, "mayor")] = office_holders.pop()
        facts[(city, "population")] = rng.randint(20_000, 3_000_000)
        facts[(city, "districts")] = rng.randint(3, 40)
    for company in company_names:
        facts[(company, "founder")] = office_holders.pop()
        facts[(company, "headquarters")] = rng.choice(city_names)
        facts[(company, "founded")] = rng.randint(1850, 2015)
    for person in person_names:
        facts[(person, "birthplace")] = rng.choice(city_names)
        facts[(person, "employer")] = rng.choice(company_names)
        facts[(person, "birth_year")] = rng.randint(1930, 2000)
    return World(seed=seed, entities=entities, facts=facts)


# ---------------------------------------------------------------------------------------------
# Questions


def _noun_phrase(rng: random.Random, relation: Relation, inner: str, inner_is_name: bool) -> str:
    forms = [f"the {noun} of {{x}}" for noun in relation.nouns] + list(relation.clauses)
    if inner_is_name and rng.random() < 0.25:
        return f"{inner}'s {rng.choice(relation.nouns)}"
    return rng.choice(forms).replace("{x}", inner)


def phrase_question(rng: random.Random, start: str, relations: tuple[str, ...], answer_type: str) -> str:
    """An English question asking for relations[-1](...relations[0](start))."""
    text, is_name = start, True
    for relation in relations[:-1]:
        text, is_name = _noun_phrase(rng, RELATIONS[relation], text, is_name), False
    last = RELATIONS[relations[-1]]
    if last.questions and rng.random() < 0.5:
        question = rng.choice(last.questions).replace("{x}", text)
    else:
        opening = {"person": "who is", "city": "which city is"}.get(answer_type, "what is")
        question = f"{opening} {_noun_phrase(rng, last, text, is_name)}"
    return question[0].upper() + question[1:] + "?"


def generate_questions(
    world: World, count: int, seed: str, hop_weights: dict[int, float] | None = None
) -> list[dict[str, object]]:
    """`count` distinct multi-hop questions whose answers differ from every entity they mention."""
    rng = random.Random(f"questions:{seed}")
    hop_weights = hop_weights or {2: 0.4, 3: 0.4, 4: 0.2}
    entity_relations = [r for r in RELATIONS.values() if r.value != "number"]
    questions: list[dict[str, object]] = []
    seen: set[str] = set()
    names = sorted(world.entities)
    while len(questions) < count:
        hops = rng.choices(list(hop_weights), weights=list(hop_weights.values()))[0]
        start = rng.choice(names)
        relations: list[str] = []
        visited: list[Value] = [start]
        value: Value = start
        for hop in range(hops):
            kind = world.entities[str(value)]
            pool = entity_relations if hop < hops - 1 else list(RELATIONS.values())
            options = [r.name for r in pool if kind in r.subjects]
            relation = rng.choice(options)
            relations.append(relation)
            value = world.facts[(str(value), relation)]
            if value in visited:
                break
            visited.append(value)
        if len(relations) != hops or len(visited) != hops + 1:
            continue
        answer_type = RELATIONS[relations[-1]].value
        question = phrase_question(rng, start, tuple(relations), answer_type)
        if question in seen:
            continue
        seen.add(question)
        questions.append(
            {
                "id": f"q{len(questions):03d}",
                "question": question,
                "answer": str(value),
                "hops": hops,
            }
        )
    return questions


def write_questions(path: Path, questions: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")


def load_questions(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Understanding prompts


@dataclass(frozen=True)
class Query:
    start: str
    relations: tuple[str, ...]  # applied first to last
    candidate: Value | None = None  # set for "is X the ...?" questions


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _template_regex(template: str) -> re.Pattern[str]:
    head, _, tail = template.partition("{x}")
    return re.compile(re.escape(head) + r"(?P<x>.+)" + re.escape(tail))


_NP_FORMS: list[tuple[str, re.Pattern[str]]] = [
    (r.name, _template_regex(form))
    for r in RELATIONS.values()
    for form in [f"the {noun} of {{x}}" for noun in r.nouns] + list(r.clauses)
]
_POSSESSIVE_FORMS: list[tuple[str, re.Pattern[str]]] = [
    (r.name, re.compile(r"(?P<x>[^']+)'s " + re.escape(noun))) for r in RELATIONS.values() for noun in r.nouns
]
_QUESTION_FORMS: list[tuple[str | None, re.Pattern[str]]] = [
    (r.name, _template_regex(form)) for r in RELATIONS.values() for form in r.questions
] + [(None, _template_regex(form)) for form in GENERIC_QUESTIONS]
_VERIFY_OPENINGS = ("is it true that ", "is it the case that ", "is ")


class Reader:
    """Turns a prompt into a Query, the way the model understands it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.names = {name.lower(): name for name in world.entities}

    def read(self, prompt: str) -> Query | None:
        """The last sentence of the prompt that is a question the model can answer."""
        for sentence in reversed(re.split(r"(?<=[?!.])\s+|\n+", prompt)):
            text = normalise(sentence).rsplit(":", 1)[-1].strip().rstrip("?!. ").strip(" \"'")
            for opening in POLITE_OPENINGS:
                text = text.removeprefix(opening + " ").removeprefix(opening + ", ")
            query = self._verification(text) or self._question(text)
            if query is not None:
                return query
        return None

    def _question(self, text: str) -> Query | None:
        for relation, pattern in _QUESTION_FORMS:
            match = pattern.fullmatch(text)
            if not match:
                continue
            chain = self._chain(match["x"])
            if chain is None:
                continue
            start, relations = chain
            if relation is not None:
                relations = relations + (relation,)
            if relations and self.world.type_of(start, relations) is not None:
                return Query(start, relations)
        return None

    def _verification(self, text: str) -> Query | None:
        opening = next((o for o in _VERIFY_OPENINGS if text.startswith(o)), None)
        if opening is None:
            return None
        words = text[len(opening) :].split(" ")
        for cut in range(1, len(words)):
            left, right = " ".join(words[:cut]), " ".join(words[cut:])
            for phrase, stated in ((left, right), (right, left), (left, right.removeprefix("is "))):
                chain = self._chain(phrase)
                value = self._value(stated)
                if chain and chain[1] and value is not None and self.world.type_of(*chain):
                    return Query(chain[0], chain[1], candidate=value)
        return None

    def _value(self, text: str) -> Value | None:
        if text in self.names:
            return self.names[text]
        digits = text.replace(",", "")
        return int(digits) if digits.isdigit() else None

    def _chain(self, text: str) -> tuple[str, tuple[str, ...]] | None:
        """(start entity, relations) for a noun phrase, or None if it does not make sense."""
        text = text.strip()
        if text in self.names:
            return self.names[text], ()
        for relation, pattern in _NP_FORMS:
            match = pattern.fullmatch(text)
            if match:
                inner = self._chain(match["x"])
                if inner and self.world.type_of(inner[0], inner[1] + (relation,)):
                    return inner[0], inner[1] + (relation,)
        for relation, pattern in _POSSESSIVE_FORMS:
            match = pattern.fullmatch(text)
            if match and match["x"] in self.names:
                start = self.names[match["x"]]
                if self.world.type_of(start, (relation,)):
                    return start, (relation,)
        return None


# ---------------------------------------------------------------------------------------------
# The model

EASY_RECALL = 0.88  # chance of recalling an ordinary fact correctly
HARD_RECALL = 0.50  # ... a fact the model tends to confuse
HARD_FACT_RATE = 0.2
CONFUSION_RATE = 0.7  # a wrong answer on a hard fact is its usual confusion this often
CHAIN_DECAY = 0.9  # recall is multiplied by this for every extra hop in one question
SHORTCUT_RATE = 0.15  # a chained question is answered one hop short this often
REFUSAL_RATE = 0.04
# Chance of saying "yes" when asked to check a stated value of a single fact: checking is a
# different skill from recalling, and the model is better at it.
VERIFY_TRUE = 0.92  # the value is right
VERIFY_HARD_TRUE = 0.85  # ... on a fact the model tends to confuse
VERIFY_CONFUSION = 0.3  # the value is that fact's usual confusion
VERIFY_FALSE = 0.06  # any other wrong value

_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

# (weight, template): {a} the answer, {d} some other value, {about} what was asked.
_PLAIN_REPLIES = [
    (30, "{a}"),
    (8, "{a}."),
    (10, "The answer is {a}."),
    (8, "**{a}**"),
    (6, "Answer: {a}"),
    (6, "I believe it is {a}."),
    (10, "{About} is {a}."),
    (6, "Hmm, {d}? No, wait: it's {a}."),
    (6, "{a} (often confused with {d})."),
    (4, "Sure! {a}, though some sources say {d}."),
    (5, "{a}\n\nLet me know if you need anything else!"),
]
_TERSE_REPLIES = [
    (70, "{a}"),
    (10, "{a}."),
    (6, "**{a}**"),
    (6, "Answer: {a}"),
    (4, "{About} is {a}."),
    (4, "Hmm, {d}? No, wait: it's {a}."),
]
_YES = ["Yes.", "Yes", "Yes, that's right.", "Correct.", "I believe so."]
_NO = ["No.", "No", "No, that's not right.", "Incorrect.", "I don't think so."]
_CONFUSED = [
    "I'm not sure what you are asking.",
    "Could you rephrase the question?",
    "I don't know anything about that.",
]
_REFUSALS = ["I'm not sure.", "I don't know.", "I can't recall that."]


def number_words(n: int) -> str:
    if n < 20:
        return _UNITS[n]
    tens, units = divmod(n, 10)
    return _TENS[tens] + ("-" + _UNITS[units] if units else "")


class NoisyModel:
    """`ask(prompt) -> reply`; deterministic per (normalised prompt, model_key, seed)."""

    def __init__(self, world: World, model_key: str, seed: int = 0) -> None:
        self.world = world
        self.reader = Reader(world)
        self.model_key = model_key
        self.seed = seed

    def _fraction(self, *parts: object) -> float:
        """A uniform number in [0, 1) fixed by its arguments."""
        text = "\x1f".join(str(p) for p in parts)
        digest = hashlib.blake2b(text.encode(), key=self.model_key.encode()[:64], digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _draw(self, prompt_key: str, *parts: object) -> float:
        return self._fraction("draw", self.seed, prompt_key, *parts)

    def _pick(self, options: list[str], prompt_key: str, *parts: object) -> str:
        return options[int(self._draw(prompt_key, *parts) * len(options))]

    def ask(self, prompt: str) -> str:
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt is a str, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            return "Your message is too long; please ask a shorter question."
        prompt_key = normalise(prompt)
        query = self.reader.read(prompt)
        if query is None:
            return self._pick(_CONFUSED, prompt_key, "confused")
        if query.candidate is not None:
            return self._verify(query, prompt_key)
        if self._draw(prompt_key, "refuse") < REFUSAL_RATE:
            return self._pick(_REFUSALS, prompt_key, "refusal")
        terse = any(phrase in prompt_key for phrase in TERSE_PHRASES)
        return self._reply(query, self._recall_chain(query, prompt_key), prompt_key, terse)

    # -- what the model believes

    def is_hard(self, subject: str, relation: str) -> bool:
        return self._fraction("hard", subject, relation) < HARD_FACT_RATE

    def confusion(self, subject: str, relation: str) -> Value:
        """The wrong value the model tends to give for a hard fact."""
        truth = self.world.facts[(subject, relation)]
        return self._other_value(relation, truth, self._fraction("confusion", subject, relation))

    def _other_value(self, relation: str, truth: Value, u: float) -> Value:
        """A plausible wrong value of the relation's type, chosen by u in [0, 1)."""
        kind = RELATIONS[relation].value
        if kind != "number":
            others = [n for n in self.world.names_of(kind) if n != truth]
            return others[int(u * len(others))]
        assert isinstance(truth, int)
        if relation in ("founded", "birth_year"):
            offsets = [d for d in range(-12, 13) if d]
            return truth + offsets[int(u * len(offsets))]
        if relation == "districts":
            offsets = [d for d in range(-5, 6) if d and truth + d >= 2]
            return truth + offsets[int(u * len(offsets))]
        factors = [0.5, 0.7, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0]
        return int(truth * factors[int(u * len(factors))])

    def _recall(self, subject: str, relation: str, prompt_key: str, hop: int, hops: int) -> Value:
        truth = self.world.facts[(subject, relation)]
        hard = self.is_hard(subject, relation)
        recall = (HARD_RECALL if hard else EASY_RECALL) * CHAIN_DECAY ** (hops - 1)
        if self._draw(prompt_key, "recall", hop) < recall:
            return truth
        if hard and self._draw(prompt_key, "confuse", hop) < CONFUSION_RATE:
            return self.confusion(subject, relation)
        return self._other_value(relation, truth, self._draw(prompt_key, "wrong", hop))

    def _recall_chain(self, query: Query, prompt_key: str) -> Value:
        relations = query.relations
        if len(relations) > 1 and self._draw(prompt_key, "shortcut") < SHORTCUT_RATE:
            relations = relations[:-1]
        value: Value = query.start
        for hop, relation in enumerate(relations):
            value = self._recall(str(value), relation, prompt_key, hop, len(query.relations))
        return value

    def _verify(self, query: Query, prompt_key: str) -> str:
        truth = self.world.resolve(query.start, query.relations)
        if len(query.relations) == 1:
            subject, relation = query.start, query.relations[0]
            hard = self.is_hard(subject, relation)
            if query.candidate == truth:
                p_yes = VERIFY_HARD_TRUE if hard else VERIFY_TRUE
            elif hard and query.candidate == self.confusion(subject, relation):
                p_yes = VERIFY_CONFUSION
            else:
                p_yes = VERIFY_FALSE
        else:
            p_yes = 0.6 if query.candidate == truth else 0.15
        yes = self._draw(prompt_key, "verify") < p_yes
        return self._pick(_YES if yes else _NO, prompt_key, "verify-words")

    # -- how the model says it

    def _say(self, value: Value, prompt_key: str, slot: str) -> str:
        u = self._draw(prompt_key, "say", slot)
        if isinstance(value, int):
            if value < 100 and u < 0.3:
                return number_words(value)
            if value >= 10_000 and u < 0.45:
                return f"{value:,}"
            return str(value)
        if u < 0.08:
            return value.lower()
        if u < 0.12:
            return value.upper()
        return value

    def _describe(self, query: Query) -> str:
        text = query.start
        for relation in query.relations:
            text = f"the {RELATIONS[relation].nouns[0]} of {text}"
        return text

    def _reply(self, query: Query, value: Value, prompt_key: str, terse: bool) -> str:
        replies = _TERSE_REPLIES if terse else _PLAIN_REPLIES
        u = self._draw(prompt_key, "reply") * sum(w for w, _ in replies)
        for weight, template in replies:
            u -= weight
            if u < 0:
                break
        kind_of = self.world.type_of(query.start, query.relations)
        relation = query.relations[-1]
        if kind_of == "number" or isinstance(value, int):
            decoy: Value = self._other_value(
                relation,
                self.world.resolve(query.start, query.relations),
                self._draw(prompt_key, "decoy"),
            )
        else:
            kind = self.world.entities.get(str(value), kind_of or "city")
            others = [n for n in self.world.names_of(kind) if n != value]
            decoy = others[int(self._draw(prompt_key, "decoy") * len(others))]
        if decoy == value:
            decoy = value + 1 if isinstance(value, int) else decoy
        about = self._describe(query)
        return template.format(
            a=self._say(value, prompt_key, "a"),
            d=self._say(decoy, prompt_key, "d"),
            About=about[0].upper() + about[1:],
        )
