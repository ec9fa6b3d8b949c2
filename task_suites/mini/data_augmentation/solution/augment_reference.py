"""Writes augmented.jsonl: seed examples, EDA-style variants and new hand-written phrasings, with noise.

    python3 augment_reference.py [--out augmented.jsonl] [--variants 40] [--seed 0]   (cwd = the workspace)

For every seed example, `variants` new ones: each word is replaced by a synonym with
probability 0.3 (SYNONYMS: a table written here from general knowledge of how people phrase
these words, not learned from anything), then one of the EDA operations (random insertion of a
synonym, random swap, random deletion) is applied, then message noise: a greeting or sign-off,
letter case, final punctuation and typos (a deleted, doubled, swapped or replaced letter).
The same is done `variants` times for each of 5 new phrasings per intent (TEMPLATES, slots
filled from SLOT_FILLERS), so the model also sees wordings the 48 seeds never use.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SYNONYMS: dict[str, list[str]] = {
    "money": ["cash", "funds", "savings"],
    "account": ["acct", "bank account", "checking account", "savings account", "current account"],
    "card": ["debit card", "credit card", "bank card", "visa", "mastercard"],
    "transfer": ["send", "wire", "pay", "move", "transfer"],
    "send": ["transfer", "wire", "pay", "move"],
    "lost": ["misplaced", "can't find", "lost", "left behind"],
    "misplaced": ["lost", "can't find"],
    "stolen": ["taken", "robbed", "stolen"],
    "open": ["create", "start", "set up", "register"],
    "create": ["open", "start", "set up"],
    "new": ["second", "another", "joint", "separate"],
    "borrow": ["take out", "get a loan of", "borrow"],
    "loan": ["mortgage", "credit", "personal loan", "credit line"],
    "house": ["home", "flat", "apartment", "car", "business"],
    "car": ["vehicle", "house", "boat", "tuition"],
    "rate": ["exchange rate", "conversion rate", "rate"],
    "exchange": ["conversion", "fx"],
    "dollar": ["euro", "pound", "yen", "franc", "peso"],
    "euro": ["dollar", "pound", "yen", "franc"],
    "change": ["reset", "update", "replace", "modify"],
    "reset": ["change", "update", "unlock"],
    "pin": ["pin code", "pin number", "passcode", "password"],
    "charge": ["payment", "transaction", "purchase", "fee", "debit"],
    "payment": ["charge", "transaction", "purchase"],
    "balance": ["available balance", "funds left", "current balance"],
    "sister": ["brother", "mom", "dad", "friend", "landlord", "John"],
    "landlord": ["sister", "friend", "colleague", "Maria"],
    "dollars": ["euros", "pounds", "bucks"],
    "want": ["need", "would like", "wish"],
    "how": ["how exactly"],
    "make": ["authorise", "do"],
    "recognise": ["recognize", "know"],
}
# New phrasings of every intent, written from general knowledge of how customers ask for these
# things; {slot}s are filled from SLOT_FILLERS.
TEMPLATES: dict[str, list[str]] = {
    "check_balance": [
        "how much is in my {account}",
        "what is my {account} balance",
        "can I see how much {money} I have",
        "tell me my balance",
        "how much {money} is left",
    ],
    "transfer_money": [
        "I need to pay {person} {amount}",
        "send {person} {amount}",
        "can I make a transfer to {person}",
        "transfer {money} to {person}'s {account}",
        "I want to wire {amount} to {person}",
    ],
    "lost_card": [
        "I can't find my {card}",
        "someone stole my {card}",
        "please block my {card}",
        "my {card} is missing",
        "report my {card} as lost",
    ],
    "open_account": [
        "I would like to open an {account}",
        "how do I become a customer",
        "can I sign up for a {account}",
        "open a {account} for me please",
        "what do I need to open an {account}",
    ],
    "loan_request": [
        "can I borrow {amount}",
        "I would like to apply for a {loan}",
        "how do I get a {loan} for a {thing}",
        "what are the interest rates on a {loan}",
        "I need {money} for a {thing}, can you lend it",
    ],
    "exchange_rate": [
        "how much is the {currency} today",
        "what is the exchange rate for {currency}",
        "convert dollars to {currency}",
        "how many {currency}s for {amount}",
        "what is the current {currency} rate",
    ],
    "change_pin": [
        "I need a new {pin}",
        "how do I reset my {pin}",
        "I forgot my {pin} for my {card}",
        "change the {pin} on my {card}",
        "can I update my {pin}",
    ],
    "dispute_charge": [
        "I want to dispute a {charge}",
        "there is a {charge} on my {card} I did not make",
        "I was charged twice",
        "I don't recognise this {charge}",
        "I need a refund for a wrong {charge}",
    ],
}
SLOT_FILLERS: dict[str, list[str]] = {
    "account": ["account", "bank account", "checking account", "savings account", "acct"],
    "money": ["money", "cash", "funds"],
    "person": ["my brother", "my friend", "my landlord", "Maria", "my mom", "a colleague"],
    "amount": ["$50", "100 dollars", "200 euros", "500", "a thousand dollars", "$20"],
    "card": ["card", "debit card", "credit card", "bank card", "visa"],
    "loan": ["loan", "mortgage", "personal loan", "credit line"],
    "thing": ["car", "house", "wedding", "business", "renovation"],
    "currency": ["euro", "pound", "yen", "dollar", "franc", "peso"],
    "pin": ["pin", "pin code", "pin number", "passcode"],
    "charge": ["charge", "payment", "transaction", "purchase"],
}
GREETINGS = ["hi", "hello", "hey", "good morning", "excuse me", "hi there"]
SIGNOFFS = ["thanks", "thank you", "please", "thx", "asap", "cheers"]


def typo(word: str, r: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = r.randrange(1, len(word) - 1)
    op = r.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + word[i] + word[i:]
    if op == 2:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + r.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def replace_synonyms(words: list[str], r: random.Random) -> list[str]:
    out: list[str] = []
    for word in words:
        options = SYNONYMS.get(word.lower().strip("?.!,"))
        out.append(r.choice(options) if options and r.random() < 0.3 else word)
    return " ".join(out).split()


def eda(words: list[str], r: random.Random) -> list[str]:
    words = list(words)
    op = r.randrange(4)
    if op == 0 and words:  # random insertion of a synonym of some word
        candidates = [w for w in words if w.lower() in SYNONYMS]
        if candidates:
            words.insert(r.randrange(len(words) + 1), r.choice(SYNONYMS[r.choice(candidates).lower()]))
    elif op == 1 and len(words) > 1:
        i, j = r.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    elif op == 2 and len(words) > 2:
        words = [w for w in words if r.random() > 0.15] or words
    return words


def message_noise(text: str, r: random.Random) -> str:
    if r.random() < 0.3:
        text = f"{r.choice(GREETINGS)} {text}"
    if r.random() < 0.3:
        text = f"{text} {r.choice(SIGNOFFS)}"
    if r.random() < 0.5:
        text = " ".join(typo(w, r) if r.random() < 0.2 else w for w in text.split())
    roll = r.random()
    text = text.lower() if roll < 0.4 else text.upper() if roll < 0.5 else text
    return text.rstrip("?.!") + r.choice(["", "", "?", ".", "!"])


def augment(text: str, r: random.Random) -> str:
    words = eda(replace_synonyms(text.rstrip("?.!").split(), r), r)
    return message_noise(" ".join(words), r)


def from_templates(templates: dict[str, list[str]], per_template: int, r: random.Random) -> list[dict[str, str]]:
    rows = []
    for label, phrasings in templates.items():
        for template in phrasings:
            for _ in range(per_template):
                text = re.sub(r"\{(\w+)\}", lambda m: r.choice(SLOT_FILLERS[m.group(1)]), template)
                rows.append({"text": augment(text, r), "label": label})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path("data/train.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("augmented.jsonl"))
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = random.Random(args.seed)
    seeds = [json.loads(line) for line in args.source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = list(seeds)
    for row in seeds:
        rows += [{"text": augment(row["text"], r), "label": row["label"]} for _ in range(args.variants)]
    rows += from_templates(TEMPLATES, args.variants, r)
    r.shuffle(rows)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
