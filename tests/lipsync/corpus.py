"""What the accuracy is measured on: sentences dense in M/B/P next to open vowels, espeak-ng
voices (male and female, en-us and en-gb) and speaking rates from 120 to 200 words per minute.

Two disjoint sets. TUNING is what the engine's constants were adjusted on while it was built;
HELD_OUT (other sentences, other voice variants, other rates) is what the accuracy test and the
benchmark report. Nothing in the engine was tuned on HELD_OUT.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    name: str  # libespeak-ng voice name[+variant]; "en" is British English (its file gmw/en)
    label: str  # for reports: accent and sex


@dataclass(frozen=True)
class Corpus:
    sentences: tuple[str, ...]
    voices: tuple[Voice, ...]
    rates: tuple[int, ...]  # words per minute


TUNING = Corpus(
    sentences=(
        "Maybe Bob will bring a big map of the bay by the pump.",
        "My mom baked plum pie, and the pups ate a bowl of popcorn.",
        "Please pass both maps, the blue pen and my bag, before we board the boat.",
        "Why would Pam move the palm lamp back up to the attic?",
    ),
    voices=(
        Voice("en-us+m3", "en-us male (m3)"),
        Voice("en-us+f4", "en-us female (f4)"),
        Voice("en-gb-x-rp", "en-gb male (rp)"),
        Voice("en+f5", "en-gb female (f5)"),
    ),
    rates=(130, 170, 195),
)

HELD_OUT = Corpus(
    sentences=(
        "Big brown bears might sample maple bread by the campfire.",
        "Mark packed a bamboo ramp, a map and a bottle of plum jam.",
        "Some people prefer a probable plan to a possible mess.",
        "Remember to pick up bread, butter, apples and a bag of limes tomorrow morning!",
        "Was the humble bumblebee humming above the pale pink blossoms?",
    ),
    voices=(
        Voice("en-us", "en-us male"),
        Voice("en-us+f3", "en-us female (f3)"),
        Voice("en", "en-gb male"),
        Voice("en+f2", "en-gb female (f2)"),
    ),
    rates=(120, 160, 200),
)


# Speech alone in other languages: the English phone loop guesses, the acoustic cues carry.
OTHER_LANGUAGES = (
    (Voice("es", "Spanish"), "Mi mamá me mima mucho, y papá bebe agua bajo el puente de piedra."),
    (Voice("de", "German"), "Mama backt Brot, Papa bringt die Milch am Montag mit."),
    (Voice("fr+f2", "French female (f2)"), "Maman apporte du pain et du beurre pour papa."),
)
