"""Beyond the reference: memory across questions, budget where it is needed, verification.

Same parsing and answer extraction as the reference scaffold, and three changes:

- Memory: solve() runs for every question in one process and questions share facts (one
  country's capital appears in many chains), so the votes for a fact are kept across questions.
  A fact seen before costs nothing if it is settled, and gets more reliable when it comes back.
- Budget where it is needed: instead of a fixed share per hop, every call goes to the least
  settled fact on the chain as currently resolved (a new fact before a settled one).
- Verification: the best one or two answers for a fact are each checked once ("Is X the capital
  of Y?"); a yes counts as two recall votes, a no as minus two. The model checks a stated answer
  more reliably than it recalls one, in particular on the facts it tends to confuse.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

CALL_BUDGET = 8

# relation -> (noun phrases with {x}, whole questions with {x}, answer is a number)
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "capital": (
        ("the capital of {x}", "the capital city of {x}"),
        ("which city is the capital of {x}",),
        False,
    ),
    "leader": (("the leader of {x}", "the head of state of {x}"), ("who leads {x}",), False),
    "country": (
        ("the country of {x}", "the country where {x} is located"),
        ("in which country is {x}", "which country is {x} in"),
        False,
    ),
    "mayor": (("the mayor of {x}",), (), False),
    "birthplace": (
        ("the birthplace of {x}", "the hometown of {x}", "the city where {x} was born"),
        ("where was {x} born", "in which city was {x} born"),
        False,
    ),
    "employer": (
        ("the employer of {x}", "the company that employs {x}"),
        ("which company employs {x}", "who employs {x}"),
        False,
    ),
    "founder": (("the founder of {x}", "the person who founded {x}"), ("who founded {x}",), False),
    "headquarters": (
        ("the headquarters of {x}", "the home city of {x}", "the city where {x} is headquartered"),
        ("where is {x} headquartered",),
        False,
    ),
    "population": (("the population of {x}",), ("how many people live in {x}",), True),
    "founded": (
        ("the founding year of {x}", "the year {x} was founded"),
        ("when was {x} founded", "in what year was {x} founded"),
        True,
    ),
    "birth_year": (
        ("the birth year of {x}", "the year of birth of {x}", "the year {x} was born"),
        ("when was {x} born", "in what year was {x} born"),
        True,
    ),
    "districts": (("the number of districts of {x}",), ("how many districts does {x} have",), True),
}
POSSESSIVE_NOUNS = {
    "capital": ("capital", "capital city"),
    "leader": ("leader", "head of state"),
    "country": ("country",),
    "mayor": ("mayor",),
    "birthplace": ("birthplace", "hometown"),
    "employer": ("employer",),
    "founder": ("founder",),
    "headquarters": ("headquarters", "home city"),
    "population": ("population",),
    "founded": ("founding year",),
    "birth_year": ("birth year", "year of birth"),
    "districts": ("number of districts",),
}
OPENINGS = (
    "what is {x}",
    "what's {x}",
    "who is {x}",
    "which city is {x}",
    "which country is {x}",
    "which company is {x}",
    "name {x}",
    "{x}",
)
WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
TENS = {
    w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"
}
NON_ANSWERS = ("not sure", "don't know", "rephrase", "can't recall", "too long", "anything about")
PREFIXES = ("", "Question: ", "Quick question: ", "Q: ", "Please tell me: ", "I have a question. ")


def _regex(template: str) -> re.Pattern[str]:
    head, _, tail = template.partition("{x}")
    return re.compile(re.escape(head) + r"(?P<x>.+)" + re.escape(tail), re.IGNORECASE)


NOUN_PHRASES = [(rel, _regex(form)) for rel, (forms, _, _) in RELATIONS.items() for form in forms]
QUESTIONS: list[tuple[str | None, re.Pattern[str]]] = [
    (rel, _regex(form)) for rel, (_, forms, _) in RELATIONS.items() for form in forms
]
QUESTIONS += [(None, _regex(form)) for form in OPENINGS]
POSSESSIVES = [
    (rel, re.compile(r"(?P<x>[^']+)'s " + re.escape(noun), re.IGNORECASE))
    for rel, nouns in POSSESSIVE_NOUNS.items()
    for noun in nouns
]


def parse_chain(text: str) -> tuple[str, list[str]]:
    """(entity name, relations applied first to last) of a noun phrase."""
    text = text.strip()
    for rel, pattern in NOUN_PHRASES + POSSESSIVES:
        match = pattern.fullmatch(text)
        if match:
            name, relations = parse_chain(match["x"])
            return name, relations + [rel]
    return text, []


def parse_question(question: str) -> tuple[str, list[str]]:
    text = " ".join(question.split()).rstrip("?. ")
    for rel, pattern in QUESTIONS:
        match = pattern.fullmatch(text)
        if match:
            name, relations = parse_chain(match["x"])
            if rel is not None:
                relations = relations + [rel]
            if relations:
                return name, relations
    return text, []


def paraphrases(relation: str, subject: str) -> list[str]:
    noun_phrases, questions, _ = RELATIONS[relation]
    wordings = [f"What is {form}?".replace("{x}", subject) for form in noun_phrases]
    wordings += [(form[0].upper() + form[1:] + "?").replace("{x}", subject) for form in questions]
    wordings += [f"What is {subject}'s {noun}?" for noun in POSSESSIVE_NOUNS[relation]]
    return [prefix + wording for prefix in PREFIXES for wording in wordings]


def to_number(text: str) -> str | None:
    digits = text.replace(",", "").strip()
    if digits.isdigit():
        return str(int(digits))
    total = 0
    for word in text.lower().replace("-", " ").split():
        if word in WORDS:
            total += WORDS[word]
        elif word in TENS:
            total += TENS[word]
        else:
            return None
    return str(total) if text.strip() else None


def extract(reply: str, numeric: bool) -> str | None:
    """The answer a reply means, without decoys and decoration; None for a non-answer."""
    text = reply.replace("**", "").strip()
    if not text or any(phrase in text.lower() for phrase in NON_ANSWERS):
        return None
    text = text.splitlines()[0]
    text = re.sub(r"\(.*?\)", "", text)  # "(often confused with ...)"
    text = re.split(r",? though ", text)[0]  # "..., though some sources say ..."
    text = re.sub(r"^(sure!|hmm,.*?no, wait:)\s*", "", text, flags=re.IGNORECASE)
    for cue in ("it's ", "answer is ", "answer: ", "it is ", " is "):
        position = text.lower().rfind(cue)
        if position >= 0:
            text = text[position + len(cue) :]
            break
    text = text.strip(" .!:\"'")
    if numeric:
        return to_number(text)
    return " ".join(text.split()) or None


# ---------------------------------------------------------------------------------------------
# What this file adds to the reference: memory across questions, spending the budget where the
# chain is least certain, and verification questions.

VERIFY_WEIGHT = 2  # a "yes" to "Is X the capital of Y?" is worth two recall votes for X, a "no" minus two
STOP_MARGIN = 4  # a fact whose best answer leads by this much gets no more calls


@dataclass
class Fact:
    recalled: Counter[str] = field(default_factory=Counter)  # lowercased answer -> times recalled
    checks: Counter[str] = field(default_factory=Counter)  # lowercased answer -> yes minus no
    checked: set[str] = field(default_factory=set)
    wordings_used: int = 0

    def scores(self) -> list[tuple[int, str]]:
        return sorted(
            ((self.recalled[a] + VERIFY_WEIGHT * self.checks[a], a) for a in self.recalled),
            reverse=True,
        )

    def margin(self) -> int:
        """How far the best answer leads; -1 when nothing believable is known yet."""
        scores = self.scores()
        if not scores or scores[0][0] <= 0:
            return -1
        return scores[0][0] - (max(scores[1][0], 0) if len(scores) > 1 else 0)


memory: dict[tuple[str, str], Fact] = {}  # (subject, relation), kept across questions
spelling: dict[str, str] = {}  # lowercased answer -> as the model wrote it


def _best(subject: str, relation: str) -> str | None:
    fact = memory.get((subject.lower(), relation))
    return spelling[fact.scores()[0][1]] if fact and fact.recalled else None


def _gather(subject: str, relation: str, ask: Callable[[str], str]) -> None:
    """One more piece of evidence for a fact: check a believable contender once, else recall."""
    fact = memory.setdefault((subject.lower(), relation), Fact())
    believable = [a for score, a in fact.scores()[:2] if score > 0]
    unchecked = [a for a in believable if a not in fact.checked]
    if unchecked and (len(believable) > 1 or fact.margin() < STOP_MARGIN):
        contender = unchecked[0]
        noun = POSSESSIVE_NOUNS[relation][0]
        reply = ask(f"Is {spelling[contender]} the {noun} of {subject}?").lower()
        fact.checked.add(contender)
        fact.checks[contender] += 1 if reply.startswith(("yes", "correct", "i believe so")) else -1
        return
    wordings = paraphrases(relation, subject)
    if fact.wordings_used < len(wordings):
        answer = extract(ask(wordings[fact.wordings_used]), RELATIONS[relation][2])
        fact.wordings_used += 1
        if answer:
            spelling.setdefault(answer.lower(), answer)
            fact.recalled[answer.lower()] += 1


def solve(question: str, ask: Callable[[str], str]) -> str:
    start, relations = parse_question(question)
    if not relations:
        return extract(ask(question), numeric=False) or ""
    for _ in range(CALL_BUDGET):
        # Follow the chain through the current best answers; spend the call on its weakest fact.
        subject, weakest, weakest_margin = start, None, STOP_MARGIN
        for relation in relations:
            fact = memory.get((subject.lower(), relation), Fact())
            if fact.margin() < weakest_margin:
                weakest, weakest_margin = (subject, relation), fact.margin()
            best = _best(subject, relation)
            if best is None:
                break
            subject = best
        if weakest is None:
            break
        try:
            _gather(*weakest, ask)
        except RuntimeError:  # the call budget is spent
            break
    subject = start
    for relation in relations:
        subject = _best(subject, relation) or subject
    return subject
