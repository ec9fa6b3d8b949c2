"""Writes train.jsonl: synthetic (free-form date, ISO date) pairs covering the styles seen in data/.

    python3 build_train.py [--out train.jsonl] [--pairs 3000] [--seed 0]

Every style of data/sample_inputs.txt gets a template family below; a date is drawn uniformly
from 1950-2049, a family uniformly, and case and spacing noise is added on top. The labels
follow the conventions of the instruction, so they are right by construction.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
from pathlib import Path

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
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
TEENS = [
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
]
LEADS = ["on ", "Date: ", "due ", "by ", "since ", "dated ", "from ", "until "]
START = datetime.date(1950, 1, 1)
SPAN = (datetime.date(2049, 12, 31) - START).days + 1


def ordinal_word(day: int) -> str:
    if day < 10:
        return UNITS[day]
    if day < 20:
        return TEENS[day - 10]
    tens = {2: "twent", 3: "thirt"}[day // 10]
    return f"{tens}ieth" if day % 10 == 0 else f"{tens}y-{UNITS[day % 10]}"


def ordinal(day: int) -> str:
    suffix = "th" if day in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def month_name(d: datetime.date, r: random.Random) -> str:
    full = MONTHS[d.month - 1]
    roll = r.random()
    if roll < 0.55:
        return full
    short = "Sept" if d.month == 9 and r.random() < 0.3 else full[:3]
    return short + "." if roll > 0.85 else short


def num(value: int, r: random.Random) -> str:
    return f"{value:02d}" if r.random() < 0.5 else str(value)


def year(d: datetime.date, r: random.Random) -> str:
    return str(d.year) if r.random() < 0.6 else f"{d.year % 100:02d}"


def day_text(d: datetime.date, r: random.Random) -> str:
    return ordinal(d.day) if r.random() < 0.3 else str(d.day)


TEMPLATES = [
    lambda d, r: d.strftime("%Y-%m-%d").replace("-", r.choice("-/.")),
    lambda d, r: d.strftime("%Y%m%d"),
    lambda d, r: f"{num(d.month, r)}/{num(d.day, r)}/{year(d, r)}",
    lambda d, r: r.choice(".-").join([num(d.day, r), num(d.month, r), year(d, r)]),
    lambda d, r: f"{month_name(d, r)} {day_text(d, r)}{r.choice([',', ''])} {d.year}",
    lambda d, r: f"{day_text(d, r)} {month_name(d, r)} {d.year}",
    lambda d, r: f"{r.choice(['the ', ''])}{ordinal(d.day)} of {month_name(d, r)}, {d.year}",
    lambda d, r: f"{num(d.day, r)}-{r.choice([str.upper, str.title])(MONTHS[d.month - 1][:3])}-{year(d, r)}",
    lambda d, r: f"{DAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d, r: f"{DAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d, r: f"the {ordinal_word(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    lambda d, r: f"{MONTHS[d.month - 1]} {ordinal_word(d.day)}, {d.year}",
    lambda d, r: f"{month_name(d, r)} {d.day} '{d.year % 100:02d}",
]


def noisy(text: str, r: random.Random) -> str:
    roll = r.random()
    text = text.lower() if roll < 0.12 else text.upper() if roll < 0.2 else text
    if r.random() < 0.1:
        text = r.choice(LEADS) + text
    if r.random() < 0.08 and " " in text:
        text = text.replace(" ", "  ", 1)
    return text


def make_pairs(count: int, seed: int) -> list[dict[str, str]]:
    r = random.Random(seed)
    pairs = []
    for _ in range(count):
        d = START + datetime.timedelta(days=r.randrange(SPAN))
        pairs.append({"input": noisy(r.choice(TEMPLATES)(d, r), r), "output": d.isoformat()})
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("train.jsonl"))
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = make_pairs(args.pairs, args.seed)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
