"""Writes the task's data: the date inputs of every split and the canonical dates they stand for.

    python3 grader/make_data.py [ROOT]     # ROOT defaults to the task directory; deterministic

- workspace/data/examples.jsonl     24 labelled examples (what the agent is given)
- workspace/data/sample_inputs.txt  400 unlabelled inputs from the test distribution
- grader/data/test.jsonl            1000 hidden inputs with their canonical dates

A date between 1950-01-01 and 2049-12-31 is written in one of many styles (weights in STYLES).
The conventions every style follows are the ones the instruction states: numbers separated by
"/" are month/day/year, by "." or "-" day.month.year, a leading four-digit year means
year-month-day, and a two-digit year 50-99 means 19xx, 00-49 means 20xx.
"""

from __future__ import annotations

import datetime
import json
import random
import sys
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent.parent
FIRST_DAY = datetime.date(1950, 1, 1)
DAY_COUNT = (datetime.date(2049, 12, 31) - FIRST_DAY).days + 1

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ORDINAL_WORDS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
]
PREFIXES = ["on ", "Date: ", "due ", "by ", "since ", "dated "]


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def short_year(year: int) -> str:
    return f"{year % 100:02d}"


def month_abbr(date: datetime.date, rng: random.Random) -> str:
    abbr = MONTHS[date.month - 1][:3]
    if date.month == 9 and rng.random() < 0.3:
        abbr = "Sept"
    return abbr + ("." if rng.random() < 0.25 else "")


def numeric_day_month(date: datetime.date, rng: random.Random) -> tuple[str, str]:
    padded = rng.random() < 0.5
    fmt = "{:02d}" if padded else "{}"
    return fmt.format(date.day), fmt.format(date.month)


def style_iso(date: datetime.date, rng: random.Random) -> str:
    sep = rng.choice(["-", "-", "/", "."])
    return f"{date.year}{sep}{date.month:02d}{sep}{date.day:02d}"


def style_compact(date: datetime.date, rng: random.Random) -> str:
    return f"{date.year}{date.month:02d}{date.day:02d}"


def style_us_slash(date: datetime.date, rng: random.Random) -> str:
    day, month = numeric_day_month(date, rng)
    year = str(date.year) if rng.random() < 0.6 else short_year(date.year)
    return f"{month}/{day}/{year}"


def style_day_first_numeric(date: datetime.date, rng: random.Random) -> str:
    day, month = numeric_day_month(date, rng)
    year = str(date.year) if rng.random() < 0.6 else short_year(date.year)
    sep = rng.choice([".", ".", "-"])
    return f"{day}{sep}{month}{sep}{year}"


def style_month_day_year(date: datetime.date, rng: random.Random) -> str:
    day = ordinal(date.day) if rng.random() < 0.3 else str(date.day)
    month = MONTHS[date.month - 1] if rng.random() < 0.6 else month_abbr(date, rng)
    comma = "," if rng.random() < 0.7 else ""
    return f"{month} {day}{comma} {date.year}"


def style_day_month_year(date: datetime.date, rng: random.Random) -> str:
    month = MONTHS[date.month - 1] if rng.random() < 0.6 else month_abbr(date, rng)
    roll = rng.random()
    if roll < 0.5:
        return f"{date.day} {month} {date.year}"
    if roll < 0.75:
        return f"{ordinal(date.day)} {month} {date.year}"
    return f"{'the ' if rng.random() < 0.5 else ''}{ordinal(date.day)} of {month}, {date.year}"


def style_dashed_abbr(date: datetime.date, rng: random.Random) -> str:
    month = MONTHS[date.month - 1][:3]
    if rng.random() < 0.5:
        month = month.upper()
    day = f"{date.day:02d}" if rng.random() < 0.5 else str(date.day)
    year = str(date.year) if rng.random() < 0.5 else short_year(date.year)
    return f"{day}-{month}-{year}"


def style_weekday(date: datetime.date, rng: random.Random) -> str:
    weekday = WEEKDAYS[date.weekday()]
    if rng.random() < 0.5:
        return f"{weekday}, {MONTHS[date.month - 1]} {date.day}, {date.year}"
    return f"{weekday[:3]} {date.day} {MONTHS[date.month - 1][:3]} {date.year}"


def style_words(date: datetime.date, rng: random.Random) -> str:
    day = ORDINAL_WORDS[date.day - 1]
    month = MONTHS[date.month - 1]
    if rng.random() < 0.5:
        return f"the {day} of {month} {date.year}"
    return f"{month} {day}, {date.year}"


def style_apostrophe_year(date: datetime.date, rng: random.Random) -> str:
    month = month_abbr(date, rng) if rng.random() < 0.6 else MONTHS[date.month - 1]
    return f"{month} {date.day} '{short_year(date.year)}"


STYLES: list[tuple[Callable[[datetime.date, random.Random], str], float]] = [
    (style_iso, 0.08),
    (style_compact, 0.04),
    (style_us_slash, 0.14),
    (style_day_first_numeric, 0.12),
    (style_month_day_year, 0.16),
    (style_day_month_year, 0.14),
    (style_dashed_abbr, 0.08),
    (style_weekday, 0.08),
    (style_words, 0.10),
    (style_apostrophe_year, 0.06),
]


def decorate(text: str, rng: random.Random) -> str:
    """Case and spacing noise, and now and then a leading word."""
    roll = rng.random()
    if roll < 0.12:
        text = text.lower()
    elif roll < 0.2:
        text = text.upper()
    if rng.random() < 0.1:
        text = rng.choice(PREFIXES) + text
    if rng.random() < 0.08:
        text = text.replace(" ", "  ", 1)
    return text


def make_pair(rng: random.Random) -> dict[str, str]:
    date = FIRST_DAY + datetime.timedelta(days=rng.randrange(DAY_COUNT))
    functions, weights = zip(*STYLES)
    style = rng.choices(functions, weights)[0]
    return {"input": decorate(style(date, rng), rng), "output": date.isoformat()}


def make_split(seed: str, count: int, exclude: AbstractSet[str] = frozenset()) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs: list[dict[str, str]] = []
    seen = set(exclude)
    while len(pairs) < count:
        pair = make_pair(rng)
        if pair["input"] not in seen:
            seen.add(pair["input"])
            pairs.append(pair)
    return pairs


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main(root: Path = TASK_DIR) -> None:
    # The test seed is a random string so the public sample cannot be used to regenerate it.
    test = make_split("3f1c9e0b7a52d846e1b0c3f7a9d25e14", 1000)
    taken = {pair["input"] for pair in test}
    examples = make_split("examples", 24, taken)
    sample = make_split("sample", 400, taken | {pair["input"] for pair in examples})
    write_jsonl(root / "grader" / "data" / "test.jsonl", test)
    write_jsonl(root / "workspace" / "data" / "examples.jsonl", examples)
    sample_path = root / "workspace" / "data" / "sample_inputs.txt"
    sample_path.write_text("".join(pair["input"] + "\n" for pair in sample), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else TASK_DIR)
