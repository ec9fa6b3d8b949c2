"""Reference scaffold: decompose, ask single facts, parse robustly, vote over paraphrases.

1. Parse the question into a chain of relations applied to a named entity ("the mayor of the
   capital of Zorbia" -> Zorbia, [capital, mayor]).
2. Resolve the chain one hop at a time with single-fact questions, which the model answers far
   better than the whole chained question.
3. For each hop, ask several differently worded prompts (each wording is an independent draw of
   the model's noise), extract the answer from each reply and take the majority.

`solve(question, ask)`; `ask` raises BudgetExceeded (a RuntimeError) after 8 calls.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

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


def vote(replies: list[str | None]) -> str | None:
    counts = Counter(r.lower() for r in replies if r)
    if not counts:
        return None
    best = max(counts.values())
    return next(r for r in replies if r and counts[r.lower()] == best)


def solve(question: str, ask: Callable[[str], str]) -> str:
    subject, relations = parse_question(question)
    if not relations:
        return extract(ask(question), numeric=False) or ""
    calls_left = CALL_BUDGET
    for hop, relation in enumerate(relations):
        hops_left = len(relations) - hop
        votes = calls_left // hops_left
        calls_left -= votes
        numeric = RELATIONS[relation][2]
        prompts = paraphrases(relation, subject)
        replies = [extract(ask(prompt), numeric) for prompt in prompts[:votes]]
        subject = vote(replies) or subject
    return subject
