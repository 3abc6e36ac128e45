"""The demo's skills and pre-training corpus: six small lookup tables over disjoint symbol sets (four seen, two unseen).

Why lookups over disjoint symbols: in a 2-layer model, experts for skills that share symbols or mechanisms
(copying vs reversing, two digit tables) rewrite the same weights and cancel when summed. Each seen skill here
reads and writes its own symbols, so gently trained task vectors add up.

Why a "decoy" corpus: the base must partly know every skill, so that a small push (a gentle expert) fixes the
rest. Pre-training shows half of each table (the "known" inputs) with correct answers; on the other half the
answer is usually a consistent wrong one (the decoy, three places further), so the base answers those wrong but
has already seen the right answer: an expert needs only a small task vector to flip them.
"""

from __future__ import annotations

import random

LETTERS = "abcdefghij"  # next / prev (multiple choice)
DIGITS = "0123456789"  # inc / dec
MIRRORED = "klmnopqrst"  # mirror: k↔t, l↔s, …
CYCLE = "uvwxyz"  # cycle: u→v→…→z→u
KNOWN = set("01234abcdeklmnouvw")  # the half of each table that pre-training answers correctly
DECOY_RATE = 0.6  # how often pre-training answers an input of the other half with the decoy


def inc(rng: random.Random) -> tuple[str, str]:
    d = rng.randrange(10)
    return f"i:{d}=", DIGITS[(d + 1) % 10]


def dec(rng: random.Random) -> tuple[str, str]:
    d = rng.randrange(10)
    return f"d:{d}=", DIGITS[(d - 1) % 10]


def next_letter(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(len(LETTERS) - 1)
    return f"n:{LETTERS[i]}>", LETTERS[i + 1]


def prev_letter(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(1, len(LETTERS))
    return f"p:{LETTERS[i]}>", LETTERS[i - 1]


def mirror(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(10)
    return f"m:{MIRRORED[i]}=", MIRRORED[9 - i]


def cycle(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(len(CYCLE))
    return f"s:{CYCLE[i]}=", CYCLE[(i + 1) % len(CYCLE)]


SEEN = {"inc": inc, "next": next_letter, "mirror": mirror, "cycle": cycle}
UNSEEN = {"dec": dec, "prev": prev_letter}
MULTIPLE_CHOICE = {"next", "prev"}
OUTPUTS = {"inc": DIGITS, "dec": DIGITS, "next": LETTERS, "prev": LETTERS, "mirror": MIRRORED, "cycle": CYCLE}


def pretraining_example(rng: random.Random) -> tuple[str, str]:
    """One (prompt, answer) of the base's corpus: every skill, correct on the known half, mostly decoys elsewhere."""
    name = rng.choice(list(OUTPUTS))
    prompt, answer = {**SEEN, **UNSEEN}[name](rng)
    if prompt[2] not in KNOWN and rng.random() < DECOY_RATE:
        symbols = OUTPUTS[name]
        answer = symbols[(symbols.index(answer) + 3) % len(symbols)]
    return prompt, answer
