"""Writes the task's data: customer messages to a bank's assistant, labelled with one of 8 intents.

    python3 grader/make_data.py [ROOT]     # ROOT defaults to the task directory; deterministic

- workspace/data/train.jsonl   48 labelled messages (6 per intent): plain wording, the first
                               templates and the first synonyms of every slot only, no noise
- grader/data/test.jsonl       800 hidden labelled messages (100 per intent), full distribution

The full distribution draws a template of the intent, fills every {slot} with one of its
phrasings, then adds noise: greetings and sign-offs, politeness, casing, dropped punctuation,
and typos (a deleted, doubled, swapped or neighbouring-key letter) in a share of the words.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Set as AbstractSet
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent.parent

SLOTS: dict[str, list[str]] = {
    "money": ["money", "cash", "funds", "dough"],
    "account": ["account", "bank account", "checking account", "savings account", "acct"],
    "card": ["card", "debit card", "credit card", "bank card", "visa"],
    "send": ["send", "transfer", "wire", "move", "pay"],
    "amount": [
        "50 dollars",
        "$200",
        "100 euros",
        "a thousand bucks",
        "300",
        "twenty quid",
        "$75.50",
    ],
    "person": [
        "my sister",
        "my landlord",
        "John",
        "my mom",
        "a friend",
        "my business partner",
        "Anna",
    ],
    "lost": ["lost", "misplaced", "can't find", "dropped"],
    "stolen": ["stolen", "taken", "nicked", "pickpocketed"],
    "open": ["open", "create", "start", "set up"],
    "new": ["new", "second", "joint", "separate"],
    "loan": ["loan", "mortgage", "credit line", "personal loan"],
    "borrow": ["borrow", "get a loan of", "take out", "finance"],
    "purpose": ["a car", "a house", "my studies", "a new kitchen", "a wedding", "my business"],
    "currency": ["euro", "dollar", "pound", "yen", "swiss franc", "peso"],
    "rate": ["exchange rate", "conversion rate", "rate", "fx rate"],
    "pin": ["pin", "pin code", "pin number", "passcode"],
    "change": ["change", "reset", "update", "modify"],
    "charge": ["charge", "payment", "transaction", "debit", "purchase"],
    "strange": [
        "I don't recognise",
        "I didn't make",
        "that isn't mine",
        "I never authorised",
        "that looks wrong",
    ],
    "balance": ["balance", "available balance", "current balance", "remaining funds"],
    "check": ["check", "see", "know", "find out", "look up"],
}

# The first template of every intent and the first phrasing of every slot are the "plain" ones
# the training examples use; the rest appear only in dev and test.
TEMPLATES: dict[str, list[str]] = {
    "check_balance": [
        "what is my {balance}",
        "how much {money} do I have in my {account}",
        "I want to {check} my {balance}",
        "can you tell me how much is left in my {account}",
        "show me the {balance} on my {account}",
        "do I still have {money} in my {account}",
        "is there enough {money} in my {account} to pay rent",
        "{balance} please",
        "did my salary arrive, how much is in my {account} now",
        "am I overdrawn",
        "what does my {account} look like at the moment",
        "how much can I still spend this month",
        "display {balance}",
    ],
    "transfer_money": [
        "I want to {send} {amount} to {person}",
        "{send} {amount} to {person}",
        "how do I {send} {money} to {person}",
        "can you {send} {amount} from my {account} to {person}",
        "I need to pay {person} back {amount}",
        "please move {amount} into {person}'s {account}",
        "make a transfer of {amount} to {person}",
        "I owe {person} {amount}, can I {send} it now",
        "split the dinner bill with {person} and {send} them {amount}",
        "set up a standing order of {amount} to {person}",
        "I need {person} to get {amount} from me today",
        "how long does it take to {send} {money} abroad",
        "wire {person} the rent",
    ],
    "lost_card": [
        "I {lost} my {card}",
        "my {card} was {stolen}",
        "I think my {card} is {stolen}, please block it",
        "help, I {lost} my {card} yesterday",
        "freeze my {card}, it is gone",
        "someone took my {card} from my bag",
        "I need to report a {stolen} {card}",
        "can you cancel my {card}? I {lost} it",
        "my wallet is gone with my {card} in it",
        "the atm swallowed my {card}",
        "I left my {card} in a taxi",
        "block my {card} right now",
        "where is my {card}, I cannot find it anywhere",
    ],
    "open_account": [
        "I want to {open} a {new} {account}",
        "how can I {open} a {new} {account}",
        "{open} a {new} {account} for me",
        "what do I need to {open} a {new} {account}",
        "I would like to become a customer and {open} a {new} {account}",
        "can my son {open} his own {account} here",
        "is it possible to {open} a {new} {account} online",
        "sign me up for a {new} {account}",
        "I just moved here and need an {account}",
        "which documents do you need for a {new} {account}",
        "how old do I have to be for an {account}",
        "I am a student, can I bank with you",
        "register me as a {new} client",
    ],
    "loan_request": [
        "I want to {borrow} {money} for {purpose}",
        "can I get a {loan} for {purpose}",
        "what are your {loan} options for {purpose}",
        "I need a {loan}",
        "how much could I {borrow} to buy {purpose}",
        "apply for a {loan} of {amount}",
        "am I eligible for a {loan}",
        "what interest would I pay on a {loan} for {purpose}",
        "I am short on {money} until payday, can you lend me some",
        "what would the monthly repayments be on {amount}",
        "can I increase my overdraft limit",
        "I need financing for {purpose}",
        "lend me {amount}",
    ],
    "exchange_rate": [
        "what is the {currency} {rate}",
        "how many {currency}s do I get for {amount}",
        "tell me today's {rate} for the {currency}",
        "what is the {rate} from dollar to {currency}",
        "is the {currency} strong right now",
        "convert {amount} to {currency}",
        "how much is one {currency} worth today",
        "current {currency} {rate} please",
        "I am travelling to japan, how many yen for {amount}",
        "what is the buying price of the {currency}",
        "has the {currency} gone up since yesterday",
        "what fee do you charge to swap dollars into {currency}s",
        "{currency} to dollar",
    ],
    "change_pin": [
        "I want to {change} my {pin}",
        "how do I {change} the {pin} of my {card}",
        "I forgot my {pin}",
        "{change} {pin}",
        "can I pick a {new} {pin} for my {card}",
        "my {pin} is blocked after three wrong tries",
        "I'd like a different {pin} for my {card}",
        "help me {change} my {card} {pin}",
        "I keep forgetting my {pin}, can I make it easier",
        "my {card} says wrong {pin}",
        "someone saw me type my {pin}, I want another one",
        "unlock my {pin}",
        "set a {new} secret number for my {card}",
    ],
    "dispute_charge": [
        "there is a {charge} {strange}",
        "I see a {charge} on my {card} {strange}",
        "I was charged twice for the same {charge}",
        "dispute a {charge} on my {account}",
        "why is there a {charge} of {amount} on my {account}",
        "a shop billed me {amount} but I cancelled the order",
        "refund this {charge}, {strange}",
        "I want my {money} back for a {charge} {strange}",
        "a merchant took {amount} twice",
        "I got billed for a subscription I cancelled",
        "this {charge} is a scam, I want a chargeback",
        "who is this company that took {money} from my {card}",
        "my {balance} is lower than it should be, something is wrong",
    ],
}

GREETINGS = ["hi", "hello", "hey", "good morning", "hi there", "excuse me", "quick question:", "yo"]
SIGNOFFS = ["thanks", "thank you", "thx", "please", "asap", "cheers", "thanks in advance", "ty"]
POLITE = ["please", "could you", "can you", "would you"]
KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"


def neighbour(letter: str, r: random.Random) -> str:
    for row in KEYBOARD.split():
        if letter in row:
            i = row.index(letter)
            return row[max(0, i - 1)] if r.random() < 0.5 else row[min(len(row) - 1, i + 1)]
    return letter


def typo(word: str, r: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = r.randrange(1, len(word) - 1)
    kind = r.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + neighbour(word[i], r) + word[i + 1 :]


def fill(template: str, r: random.Random, plain: bool) -> str:
    return re.sub(
        r"\{(\w+)\}",
        lambda m: SLOTS[m.group(1)][0 if plain else r.randrange(len(SLOTS[m.group(1)]))],
        template,
    )


def noisy(text: str, r: random.Random) -> str:
    if r.random() < 0.35:
        text = f"{r.choice(GREETINGS)} {text}"
    if r.random() < 0.3:
        text = f"{text} {r.choice(SIGNOFFS)}"
    if r.random() < 0.1:
        text = f"{r.choice(POLITE)} {text}"
    if r.random() < 0.5:
        words = text.split(" ")
        share = r.choice([0.1, 0.2, 0.3, 0.4])
        text = " ".join(typo(w, r) if r.random() < share else w for w in words)
    roll = r.random()
    if roll < 0.15:
        text = text.upper()
    elif roll < 0.55:
        text = text.lower()
    elif roll < 0.85:
        text = text[0].upper() + text[1:]
    if r.random() < 0.5:
        text += r.choice(["?", ".", "!", "??", "..."])
    return text


def make_split(
    seed: str, per_intent: int, plain: bool, exclude: AbstractSet[str] = frozenset()
) -> list[dict[str, str]]:
    r = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen = set(exclude)
    for intent, templates in TEMPLATES.items():
        count = 0
        while count < per_intent:
            if plain:
                # the first two templates, each slot with one of its first two phrasings
                template = templates[r.randrange(2)]
                text = re.sub(r"\{(\w+)\}", lambda m: SLOTS[m.group(1)][r.randrange(2)], template)
                text = text[0].upper() + text[1:] + r.choice(["", ".", "?"])
            else:
                text = noisy(fill(r.choice(templates), r, plain=False), r)
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "label": intent})
                count += 1
    r.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main(root: Path = TASK_DIR) -> None:
    # A random seed for the test split, so the generator (if it leaked) would not reproduce it.
    test = make_split("5e0c2a71d9b34f68a0e1c7b2d4f98a36", 100, plain=False)
    train = make_split("train", 6, plain=True, exclude={row["text"] for row in test})
    write_jsonl(root / "grader" / "data" / "test.jsonl", test)
    write_jsonl(root / "workspace" / "data" / "train.jsonl", train)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else TASK_DIR)
