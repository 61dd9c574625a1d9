"""The words of the scenes world: class names, caption templates, person phrases, held-out lists.

Training captions use only ``TRAIN_NAMES`` and ``TRAIN_TEMPLATES``; ``HELDOUT_NAMES`` and
``HELDOUT_TEMPLATES`` never occur in a training caption (tests/test_synth.py checks it), so
zero-shot with them measures what the text tower brings, not what the captions taught.
"""
from __future__ import annotations

import re

# class -> names used in training captions (the first is the class name itself)
TRAIN_NAMES: dict[str, list[str]] = {
    "kite": ["kite", "paper kite", "toy kite", "diamond kite", "box kite", "colourful kite"],
    "guitar": ["guitar", "acoustic guitar", "electric guitar", "six-string guitar", "bass guitar", "classical guitar"],
    "book": ["book", "hardcover book", "paperback", "textbook", "storybook", "picture book"],
    "flower": ["flower", "daisy", "wildflower", "garden flower", "pretty flower", "spring flower"],
    "ball": ["ball", "beach ball", "rubber ball", "bouncy ball", "tennis ball", "soccer ball"],
    "cup": ["cup", "coffee cup", "teacup", "tea cup", "drinking cup", "paper cup"],
    "key": ["key", "house key", "metal key", "brass key", "small key", "old key"],
    "phone": ["phone", "smartphone", "cell phone", "telephone", "touchscreen phone", "handset"],
    "umbrella": ["umbrella", "rain umbrella", "open umbrella", "folding umbrella", "black umbrella", "big umbrella"],
    "star": ["star", "star shape", "gold star", "star symbol", "bright star", "star sticker"],
    "heart": ["heart", "heart shape", "love heart", "heart symbol", "heart sign", "heart emoji"],
    "fish": ["fish", "goldfish", "tropical fish", "little fish", "aquarium fish", "swimming fish"],
    "hammer": ["hammer", "claw hammer", "carpenter's hammer", "steel hammer", "ball-peen hammer", "sledgehammer"],
    "bottle": ["bottle", "water bottle", "glass bottle", "plastic bottle", "wine bottle", "milk bottle"],
    "apple": ["apple", "ripe apple", "fresh apple", "crisp apple", "juicy apple", "shiny apple"],
    "bell": ["bell", "hand bell", "brass bell", "school bell", "church bell", "dinner bell"],
}
# class -> a name no training caption uses (synonyms a pretrained text tower may know)
HELDOUT_NAMES: dict[str, str] = {
    "kite": "flying toy", "guitar": "musical instrument", "book": "novel", "flower": "blossom",
    "ball": "sphere", "cup": "mug", "key": "door key", "phone": "mobile phone", "umbrella": "parasol",
    "star": "five-pointed star", "heart": "valentine", "fish": "salmon", "hammer": "mallet",
    "bottle": "flask", "apple": "fruit", "bell": "chime",
}
CLASSES: list[str] = list(TRAIN_NAMES)

# {} is the object's name; {person} a person phrase (a generic one in the zero-shot forms)
TRAIN_TEMPLATES: list[str] = [
    "a photo of {person} holding a {}.", "{person} holding a {}.", "{person} with a {}.",
    "a picture of {person} with a {}.", "a drawing of {person} holding a {}.", "a cartoon of {person} and a {}.",
    "a {} held by {person}.", "{person} shows a {}.", "an illustration of {person} holding a {}.",
    "{person} holds a {}.", "{person} is holding a {}.", "a {} in the hand of {person}.",
    "a scene with {person} and a {}.", "a small picture of {person} with a {}.", "a photo of a {}.",
    "a picture of a {}.", "a drawing of a {}.", "a rendering of a {}.", "a simple drawing of a {}.",
    "a cartoon {}.", "there is a {} in this picture.", "this is a {}.", "a figure holding a {}.",
    "a colourful {}.",
]
GENERIC_PERSON = "a person"
# zero-shot templates no training caption uses
HELDOUT_TEMPLATES: list[str] = [
    "an image of a {}.", "a snapshot of someone lifting a {}.", "a photograph showing a {}.",
    "someone who has a {}.", "a {} being held up.", "a close look at a {}.", "a toy figure with a {}.",
    "a sketch featuring a {}.",
]

AGE_WORDS: dict[str, list[str]] = {"child": ["child", "kid", "young child", "little kid"],
                                   "adult": ["adult", "grown-up", "adult person"]}
TONE_WORDS: dict[str, list[str]] = {"light": ["light-skinned", "fair-skinned"],
                                    "medium": ["medium-skinned", "olive-skinned"],
                                    "dark": ["dark-skinned", "brown-skinned"]}
# share of training captions whose person is generic / described by age / by age and tone
PERSON_MIX = (0.4, 0.3, 0.3)

SCENES: list[str] = ["park", "beach", "room", "night"]


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def person_phrase(age: str, tone: str, kind: int, pick: int) -> str:
    """kind 0: 'a person'; 1: 'a child'; 2: 'a dark-skinned child' (``pick`` chooses among the words)."""
    if kind == 0:
        return GENERIC_PERSON
    words = AGE_WORDS[age]
    age_word = words[pick % len(words)]
    if kind == 1:
        return article(age_word)
    tones = TONE_WORDS[tone]
    return article(f"{tones[pick % len(tones)]} {age_word}")


def zero_shot_templates(templates: list[str]) -> list[str]:
    """The one-slot forms of caption templates: ``{person}`` becomes the generic person."""
    return [t.replace("{person}", GENERIC_PERSON) for t in templates]


def mentions(caption: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``caption`` as whole words."""
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", caption) is not None
