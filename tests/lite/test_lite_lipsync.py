"""Lip sync on synthetic English speech with known words, measured on the rendered frames.

The mouth opening is measured with the landmark detector on the video the engine made (not
read back from the engine's own tracks), then compared with the phone timing from
pocketsphinx's forced alignment of the same speech and with the speech's loudness.
"""

from __future__ import annotations

import numpy as np
from lite_helpers import Image, Speech, make_inputs

from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE
from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.engines.lite.features import frame_features
from multitalk.runner.engines.lite.landmarks import FaceFinder, mouth_opening
from multitalk.runner.engines.lite.phonemes import PhoneRecognizer, normalise_transcript

CLOSED = {"M", "B", "P"}
OPEN = {"AA", "AE", "AH", "AO", "AW", "AY"}


def _measure(frames: list[Image], finder: FaceFinder) -> np.ndarray:
    """Inner-lip gap / face height on each frame, by the landmark detector."""
    values = []
    for frame in frames:
        faces = finder.mesh(frame)
        assert faces, "the landmark detector must still find the face on a rendered frame"
        values.append(mouth_opening(faces[0]))
    return np.array(values)


def test_mouth_follows_phones_and_energy(
    engine: LiteEngine, finder: FaceFinder, portrait: Image, speech: Speech
) -> None:
    fps = 25
    inputs = make_inputs(portrait, [speech.audio], fps=fps, transcripts=[speech.transcript])
    engine.prepare(inputs, lambda _: None)
    assert engine.methods == ["aligned"]
    frames = list(engine.frames(inputs, lambda _: None))
    assert len(frames) == inputs.frames
    opening = _measure(frames, finder)
    reference = mouth_opening(finder.mesh(portrait)[0])

    # Phone timing from an independent forced alignment of the same words.
    phones = PhoneRecognizer().align(speech.audio, normalise_transcript(speech.transcript))
    assert phones, "pocketsphinx must align the espeak-ng sentence"
    times = (np.arange(len(frames)) + 0.5) / fps

    def frames_in(labels: set[str]) -> np.ndarray:
        picked = []
        for ph in phones:
            if ph.label in labels:
                # the middle of the phone (co-articulation blurs its edges)
                mid = (ph.start + ph.end) / 2
                picked.append(int(np.argmin(np.abs(times - mid))))
        return np.array(sorted(set(picked)))

    closed, opened = frames_in(CLOSED), frames_in(OPEN)
    assert len(closed) >= 6 and len(opened) >= 6
    closed_mean, open_mean = float(opening[closed].mean()), float(opening[opened].mean())
    print(
        f"\nmouth opening (gap / face height): reference {reference:.3f}, "
        f"M/B/P {closed_mean:.3f}, open vowels {open_mean:.3f}"
    )
    # Lips meet on M/B/P: the photo's own smile shows teeth (reference gap ~0.065), the detector
    # reads pressed lips in that smiling face as ~0.03...
    assert closed_mean < 0.7 * reference
    assert float(np.median(opening[closed])) < 0.045
    # ...and open on AA/AE/AH/AY: beyond the photo's smile and about twice the closures.
    assert open_mean > reference
    assert open_mean > 1.8 * closed_mean

    # The opening follows the speech envelope while speaking. (In pauses the mouth rests in the
    # photo's own smile, which shows teeth, so pauses are left out of the correlation.)
    loud = frame_features(speech.audio, ENGINE_SAMPLE_RATE, fps, len(frames)).loudness
    speaking = loud > 0.15
    corr = float(np.corrcoef(opening[speaking], loud[speaking])[0, 1])
    print(f"correlation of measured mouth opening with speech loudness while speaking: r = {corr:.2f}")
    assert corr > 0.45
