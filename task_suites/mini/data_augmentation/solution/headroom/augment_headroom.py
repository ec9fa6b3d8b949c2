"""Headroom over the reference: twice the phrasings, richer slot fillers, more typo-robust copies.

    python3 headroom/augment_headroom.py [--out augmented.jsonl]     (cwd = the workspace)

The reference pipeline (../augment_reference.py) with three additions:
- MORE_TEMPLATES: 6 further phrasings per intent, aimed at the ways real customers describe the
  situation rather than name the service ("the atm kept my card", "I am short until payday").
- More slot fillers (people, amounts, currencies, purposes) and synonyms.
- Every generated example is also added once with heavy typos (a third of the words), so the
  vocabulary holds misspelt forms of the words that carry the intent.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import augment_reference as reference

MORE_TEMPLATES: dict[str, list[str]] = {
    "check_balance": [
        "am I in the red",
        "how much can I spend",
        "has my salary come in",
        "what is in my {account} right now",
        "do I have enough {money} for rent",
        "show my balance",
    ],
    "transfer_money": [
        "pay back {person}",
        "I owe {person} {amount}",
        "set up a payment to {person}",
        "how do I send {money} abroad",
        "move {amount} from my {account} to {person}",
        "give {person} {amount} from my {account}",
    ],
    "lost_card": [
        "my wallet was stolen with my {card}",
        "the atm kept my {card}",
        "I left my {card} somewhere",
        "freeze my {card}",
        "cancel my {card} it is gone",
        "my {card} was taken from my bag",
    ],
    "open_account": [
        "which documents do I need for an {account}",
        "I am new here and want to bank with you",
        "can my child have an {account}",
        "register a {account} online",
        "I want to join your bank",
        "can students get an {account}",
    ],
    "loan_request": [
        "I am short on {money} until payday",
        "what would the monthly payments be on {amount}",
        "can I raise my overdraft",
        "lend me {amount}",
        "I need financing for a {thing}",
        "am I eligible for a {loan}",
    ],
    "exchange_rate": [
        "I am going to japan, how many yen do I get",
        "has the {currency} gone up",
        "what do you charge to buy {currency}s",
        "{currency} to dollar",
        "is the {currency} strong today",
        "what is one {currency} worth",
    ],
    "change_pin": [
        "my {card} says wrong {pin}",
        "my {pin} is blocked",
        "someone saw my {pin}, I want a new one",
        "unlock my {pin}",
        "choose a different secret number for my {card}",
        "I keep forgetting my {pin}",
    ],
    "dispute_charge": [
        "a shop took {amount} twice",
        "I was billed for a subscription I cancelled",
        "this {charge} is fraud, I want a chargeback",
        "who took {money} from my {card}",
        "my balance is lower than it should be",
        "refund this {charge}",
    ],
}
MORE_FILLERS = {
    "person": ["my sister", "my dad", "John", "Anna", "my business partner", "my roommate"],
    "amount": ["$75.50", "300", "twenty quid", "a thousand bucks", "1000 euros", "50 pounds"],
    "currency": ["swiss franc", "rupee", "krona"],
    "thing": ["kitchen", "studies", "boat", "new roof"],
    "money": ["dough", "savings"],
}
MORE_SYNONYMS = {
    "stole": ["took", "nicked", "pinched"],
    "block": ["freeze", "cancel", "stop"],
    "spend": ["use", "withdraw"],
    "borrow": ["take out", "get a loan of", "finance"],
    "refund": ["reimburse", "return"],
    "dispute": ["contest", "challenge", "complain about"],
}


def heavy_typos(text: str, r: random.Random) -> str:
    return " ".join(reference.typo(w, r) if r.random() < 0.33 else w for w in text.split())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path("data/train.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("augmented.jsonl"))
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = random.Random(args.seed)
    for slot, fillers in MORE_FILLERS.items():
        reference.SLOT_FILLERS[slot] = reference.SLOT_FILLERS[slot] + fillers
    reference.SYNONYMS.update(MORE_SYNONYMS)
    seeds = [json.loads(line) for line in args.source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = list(seeds)
    for row in seeds:
        rows += [{"text": reference.augment(row["text"], r), "label": row["label"]} for _ in range(args.variants)]
    templates = {label: reference.TEMPLATES[label] + MORE_TEMPLATES[label] for label in reference.TEMPLATES}
    rows += reference.from_templates(templates, args.variants, r)
    rows += [{"text": heavy_typos(row["text"], r), "label": row["label"]} for row in list(rows)]
    r.shuffle(rows)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
