"""Two speakers: each face is driven by its own voice; only the speaking face moves."""

from __future__ import annotations

import numpy as np
import pytest
from lite_helpers import Image, Speech, make_inputs

from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.engines.lite.landmarks import FaceFinder, mouth_opening
from multitalk.runner.errors import InvalidInput


@pytest.fixture(scope="module")
def pair(portrait: Image) -> Image:
    """Two people side by side (the astronaut twice, the right one mirrored)."""
    return np.ascontiguousarray(np.concatenate([portrait, portrait[:, ::-1]], axis=1))


def _openings(frames: list[Image], finder: FaceFinder, half: int) -> tuple[np.ndarray, np.ndarray]:
    left, right = [], []
    for frame in frames:
        for side, crop in ((left, frame[:, :half]), (right, frame[:, half:])):
            faces = finder.mesh(np.ascontiguousarray(crop))
            assert faces
            side.append(mouth_opening(faces[0]))
    return np.array(left), np.array(right)


def test_only_the_speaking_face_moves(
    engine: LiteEngine, finder: FaceFinder, pair: Image, speech: Speech, other_speech: Speech
) -> None:
    # Sequential turns, as the runner places them: speaker 1 talks, then speaker 2.
    silence1 = np.zeros_like(other_speech.audio)
    silence2 = np.zeros_like(speech.audio)
    first = np.concatenate([speech.audio, silence1])
    second = np.concatenate([silence2, other_speech.audio])
    inputs = make_inputs(pair, [first, second], lite={"blinksPerMinute": 0, "headMotion": 0})
    engine.prepare(inputs, lambda _: None)
    left_warp, right_warp = engine.warps
    assert left_warp.region[3] <= right_warp.region[2], "face regions must not overlap"
    turn = round(len(speech.audio) / 16_000 * inputs.fps)
    half = pair.shape[1] // 2
    frames = list(engine.frames(inputs, lambda _: None))

    # Without blinks and head motion, a silent face is pixel for pixel the photo.
    ly0, ly1, lx0, lx1 = left_warp.region
    ry0, ry1, rx0, rx1 = right_warp.region
    for index, frame in enumerate(frames):
        if index < turn - 3:
            assert np.array_equal(frame[ry0:ry1, rx0:rx1], pair[ry0:ry1, rx0:rx1])
        if index > turn + 3:
            assert np.array_equal(frame[ly0:ly1, lx0:lx1], pair[ly0:ly1, lx0:lx1])

    # And the speaking face's mouth really moves, measured by the landmark detector.
    sample = frames[::2]
    left, right = _openings(sample, finder, half)
    cut = turn // 2
    print(
        f"\nmouth-opening spread: speaker 1 talking {left[:cut].std():.4f} vs silent {right[:cut].std():.4f}; "
        f"speaker 2 talking {right[cut:].std():.4f} vs silent {left[cut:].std():.4f}"
    )
    assert left[:cut].std() > 5 * max(right[:cut].std(), 1e-4)
    assert right[cut:].std() > 5 * max(left[cut:].std(), 1e-4)


def test_with_default_motion_the_listener_keeps_its_mouth(
    engine: LiteEngine, finder: FaceFinder, pair: Image, speech: Speech
) -> None:
    inputs = make_inputs(pair, [speech.audio, np.zeros_like(speech.audio)])
    engine.prepare(inputs, lambda _: None)
    frames = list(engine.frames(inputs, lambda _: None))[::2]
    left, right = _openings(frames, finder, pair.shape[1] // 2)
    assert left.std() > 4 * right.std()


def test_bbox_picks_the_face(engine: LiteEngine, pair: Image, speech: Speech) -> None:
    # Speaker 1's bbox on the right-hand person: speaker 1 drives the right face.
    inputs = make_inputs(
        pair,
        [speech.audio, np.zeros_like(speech.audio)],
        bboxes=[[40.0, 500.0, 220.0, 800.0], None],
        lite={"blinksPerMinute": 0, "headMotion": 0},
    )
    engine.prepare(inputs, lambda _: None)
    assert engine.warps[0].region[2] >= pair.shape[1] // 2 > engine.warps[1].region[3] - 1


def test_two_speakers_need_two_faces(engine: LiteEngine, portrait: Image, speech: Speech) -> None:
    inputs = make_inputs(portrait, [speech.audio, speech.audio])
    with pytest.raises(InvalidInput, match="2 speakers need 2 faces") as info:
        engine.prepare(inputs, lambda _: None)
    assert info.value.field == "image"


def test_bbox_without_a_face(engine: LiteEngine, pair: Image, speech: Speech) -> None:
    inputs = make_inputs(pair, [speech.audio], bboxes=[[300.0, 10.0, 470.0, 100.0]])
    with pytest.raises(InvalidInput, match="no face found inside the bbox") as info:
        engine.prepare(inputs, lambda _: None)
    assert info.value.field == "speakers[0].bbox"
