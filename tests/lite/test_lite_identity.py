"""Identity: pixels away from the face are the reference's; the face stays where it is (no drift)."""

from __future__ import annotations

import numpy as np
from lite_helpers import Image, Speech, make_inputs

from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.engines.lite.landmarks import EYES, NOSE_TIP, FaceFinder

# Landmarks that only head motion may move (eye corners, nose tip).
_RIGID = [NOSE_TIP, *(c for eye in EYES for c in eye[:2])]


def test_outside_face_region_equals_reference(engine: LiteEngine, portrait: Image, speech: Speech) -> None:
    inputs = make_inputs(portrait, [speech.audio])
    engine.prepare(inputs, lambda _: None)
    (warp,) = engine.warps
    y0, y1, x0, x1 = warp.region
    # The region is the face plus a margin, not the picture.
    assert (y1 - y0) * (x1 - x0) < 0.5 * portrait.shape[0] * portrait.shape[1]
    outside = np.ones(portrait.shape[:2], dtype=bool)
    outside[y0:y1, x0:x1] = False
    changed_inside = 0
    for frame in engine.frames(inputs, lambda _: None):
        assert frame.shape == portrait.shape and frame.dtype == np.uint8
        assert np.array_equal(frame[outside], portrait[outside])
        changed_inside += int(not np.array_equal(frame, portrait))
    assert changed_inside > inputs.frames // 2  # and the face does move


def test_no_drift_over_a_minute(engine: LiteEngine, finder: FaceFinder, portrait: Image, speech: Speech) -> None:
    # 60 s of talking: the sentence again and again.
    repeats = int(np.ceil(60 * 16_000 / len(speech.audio)))
    long_speech = np.tile(speech.audio, repeats)[: 60 * 16_000]
    inputs = make_inputs(portrait, [long_speech], fps=25)
    engine.prepare(inputs, lambda _: None)
    reference = finder.mesh(portrait)[0]
    height = reference.height
    sampled = {0, 375, 750, 1125, inputs.frames - 1}
    worst = 0.0
    for index, frame in enumerate(engine.frames(inputs, lambda _: None)):
        if index not in sampled:
            continue
        faces = finder.mesh(frame)
        assert faces, f"face lost at frame {index}"
        offset = np.linalg.norm(faces[0].points[_RIGID] - reference.points[_RIGID], axis=1).max() / height
        worst = max(worst, float(offset))
    print(f"\nlargest shift of eye corners / nose tip over 60 s: {worst:.3f} face heights")
    # Head motion sways by about 1-2 % of the face height; drift would grow with time.
    assert worst < 0.04
