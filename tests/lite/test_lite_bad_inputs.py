"""Images the lite engine refuses, each with a message a person can act on (exit code 3)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from lite_helpers import Image, Speech, fit, make_inputs
from skimage import data

from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.errors import ExitCode, InvalidInput
from multitalk.runner.request import RenderRequest


def _background() -> Image:
    """A photograph without people (skimage's coffee cup), so no test image is unnaturally flat."""
    return fit(data.coffee(), 480, 480)


def no_face() -> Image:
    return _background()


def drawing() -> Image:
    """The astronaut as a flat-colour cartoon with ink lines, saved losslessly."""
    photo = data.astronaut()
    flat = cv2.bilateralFilter(photo, 9, 75, 75) // 48 * 48 + 24
    edges = cv2.Canny(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), 80, 160) > 0
    flat[edges] = 0
    return fit(flat.astype(np.uint8), 480, 480)


def line_art() -> Image:
    """The astronaut as black ink lines on white paper (a black-and-white drawing)."""
    photo = data.astronaut()
    edges = cv2.Canny(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), 80, 160)
    paper = np.full_like(photo, 255)
    paper[cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0] = 0
    return fit(paper, 480, 480)


def tiny_face() -> Image:
    canvas = _background().copy()
    canvas[150:290, 150:290] = fit(data.astronaut(), 140, 140)  # face about 30 px tall
    return canvas


def face_cut_by_border() -> Image:
    photo = data.astronaut()
    shifted = np.concatenate([photo[:, 190:], fit(data.coffee(), 512, 512)[:, :190]], axis=1)
    return fit(shifted, 480, 480)  # the face's left part lies outside the picture


@pytest.mark.parametrize(
    ("make_image", "expected"),
    [
        (no_face, r"no face found in the image"),
        (drawing, r"looks like a drawing"),
        (line_art, r"looks like a drawing"),
        (tiny_face, r"only \d+ px tall .* needs at least 64 px"),
        (face_cut_by_border, r"cut by the left border"),
    ],
    ids=["no-face", "drawing", "line-art", "tiny-face", "cut-by-border"],
)
def test_refused_with_a_clear_message(engine: LiteEngine, speech: Speech, make_image: object, expected: str) -> None:
    assert callable(make_image)
    image = make_image()
    inputs = make_inputs(image, [speech.audio])
    with pytest.raises(InvalidInput, match=expected) as info:
        engine.prepare(inputs, lambda _: None)
    assert info.value.field == "image"
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    print(f"\n{make_image.__name__}: {info.value}")  # type: ignore[attr-defined]


@pytest.mark.parametrize("grayscale", [False, True], ids=["colour", "black-and-white"])
def test_photo_is_accepted(engine: LiteEngine, portrait: Image, speech: Speech, grayscale: bool) -> None:
    if grayscale:  # a black-and-white photo repeats its 256 levels but is no drawing
        portrait = np.ascontiguousarray(np.repeat(cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2))
    engine.prepare(make_inputs(portrait, [speech.audio]), lambda _: None)
    assert len(engine.warps) == 1


def test_request_without_image(engine: LiteEngine) -> None:
    request = RenderRequest.model_validate(
        {"engine": "lite", "speakers": [{"audio": "a.wav"}], "output": {"uri": "o.mp4"}}
    )
    with pytest.raises(InvalidInput, match="animates a portrait") as info:
        engine.validate(request)
    assert info.value.field == "image"
