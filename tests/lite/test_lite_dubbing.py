"""Lite dubbing: a talking video (lite's own render of one sentence) dubbed to another sentence.

The mouth is measured with the independent detector of the lip-sync suite (mediapipe's
refined attention mesh in video mode, on the decoded H.264 frames), never the engine's track.
"""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from lipsync.measure import MouthMeter
from lite_helpers import Speech, make_inputs
from PIL import Image as PILImage
from video_samples import write_video

from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE, RenderInputs
from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.engines.lite.dubbing import fill_and_smooth
from multitalk.runner.engines.lite.landmarks import CHIN, NOSE_TIP, FaceFinder, mouth_opening
from multitalk.runner.errors import InvalidInput
from multitalk.runner.pipeline import Pipeline
from multitalk.runner.request import RenderRequest
from multitalk.runner.video_source import SourceVideo

Image = npt.NDArray[np.uint8]
SIZE, FPS = 480, 25


def _wav(speech: Speech, path: Path) -> Path:
    pcm = (np.clip(speech.audio, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(ENGINE_SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


def _render(out: Path, audio: Path, **inputs: str) -> Path:
    request = RenderRequest.model_validate(
        {
            "engine": "lite",
            **inputs,
            "speakers": [{"audio": str(audio)}],
            "video": {"width": SIZE, "height": SIZE, "fps": FPS},
            "output": {"uri": str(out), "overwrite": True},
        }
    )
    Pipeline(request, out.parent / "no-model-cache").run()
    return out


def _frames(video: Path) -> list[Image]:
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@dataclasses.dataclass(frozen=True)
class Dub:
    source: Path  # lite's render of OTHER_SENTENCE
    dub: Path  # that video dubbed to SENTENCE
    reference: Path  # lite's render of SENTENCE from the portrait: how the new speech should look
    speech_frames: int


@pytest.fixture(scope="module")
def dubbed(tmp_path_factory: pytest.TempPathFactory, portrait: Image, speech: Speech, other_speech: Speech) -> Dub:
    root = tmp_path_factory.mktemp("dub")
    PILImage.fromarray(portrait).save(root / "portrait.png")
    # The source says the shorter sentence: the dub outlasts it.
    first, second = _wav(other_speech, root / "first.wav"), _wav(speech, root / "second.wav")
    source = _render(root / "source.mp4", first, image=str(root / "portrait.png"))
    dub = _render(root / "dub.mp4", second, sourceVideo=str(source))
    reference = _render(root / "reference.mp4", second, image=str(root / "portrait.png"))
    return Dub(source, dub, reference, round(len(speech.audio) / ENGINE_SAMPLE_RATE * FPS))


def test_the_dub_takes_its_length_from_the_new_speech(dubbed: Dub) -> None:
    assert len(_frames(dubbed.dub)) == dubbed.speech_frames
    assert len(_frames(dubbed.source)) != dubbed.speech_frames


def test_eyes_and_background_are_the_source_frames(
    engine: LiteEngine, finder: FaceFinder, dubbed: Dub, speech: Speech
) -> None:
    """Engine frames before encoding: above the nose and outside the face, each dubbed frame is its
    source frame, pixel for pixel, also past the source's end (its last frame held)."""
    source = SourceVideo(dubbed.source.read_bytes(), SIZE, SIZE, FPS)
    face = finder.find(source.frame(0))[0][0]  # the independent detector, for where to look
    nose, chin = round(float(face.points[NOSE_TIP, 1])), round(float(face.points[CHIN, 1]))
    eyes, mouth = slice(0, nose - round(0.05 * face.height)), slice(nose + 8, chin)
    left = slice(0, round(face.box[1] - 0.2 * face.width))
    inputs = _dub_inputs(source, dubbed.source, speech.audio)
    engine.prepare(inputs, lambda f: None)
    out = list(engine.frames(inputs, lambda f: None))
    assert len(out) == inputs.frames == dubbed.speech_frames
    moved = redrawn = 0
    for i, frame in enumerate(out):
        shot = source.frame(i)
        assert np.array_equal(frame[eyes], shot[eyes]) and np.array_equal(frame[:, left], shot[:, left]), i
        redrawn += int(not np.array_equal(frame[mouth], shot[mouth]))
        moved += int(i > 0 and not np.array_equal(shot[eyes], source.frame(i - 1)[eyes]))
    assert redrawn > 0.9 * len(out)  # the mouth is the resting frame's, animated anew
    assert moved > len(out) // 2  # the source's head and lids move: following them is not for free
    assert source.exhausted  # the speech outlasts the source


def _dub_inputs(source: SourceVideo, path: Path, audio: npt.NDArray[np.float32]) -> RenderInputs:
    inputs = make_inputs(source.frame(0), [audio], fps=FPS)
    request = inputs.request.model_copy(update={"image": None, "source_video": str(path)})
    return dataclasses.replace(inputs, request=request, source=source)


def _lag(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], radius: int = 6) -> int:
    """The shift of b (frames) that best matches a."""
    a, b = a - a.mean(), b - b.mean()
    scores = {k: float(np.dot(a[radius:-radius], np.roll(b, k)[radius:-radius])) for k in range(-radius, radius + 1)}
    return max(scores, key=lambda k: scores[k])


def test_the_mouth_follows_the_new_speech_in_sync(dubbed: Dub) -> None:
    meter = MouthMeter()
    dub, reference, source = (meter.measure(p).aperture for p in (dubbed.dub, dubbed.reference, dubbed.source))
    n = min(len(dub), len(reference), len(source))
    dub, reference, source = (np.nan_to_num(x[:n], nan=0.0) for x in (dub, reference, source))
    with_new = float(np.corrcoef(dub, reference)[0, 1])
    with_old = float(np.corrcoef(dub, source)[0, 1])
    print(f"mouth opening correlation: with the new speech {with_new:.2f}, with the source's speech {with_old:.2f}")
    assert with_new > 0.6 and with_new > with_old + 0.3, (with_new, with_old)
    assert abs(_lag(reference, dub)) <= 1  # audio and video within a frame


def test_short_face_gaps_are_filled_and_long_ones_keep_the_source(
    tmp_path: Path, engine: LiteEngine, dubbed: Dub, other_speech: Speech
) -> None:
    frames = _frames(dubbed.source)[:100]
    grey = np.full_like(frames[0], 128)
    short, long = range(20, 24), range(50, 80)  # 4 frames (filled), 30 frames (1.2 s: left as filmed)
    for i in [*short, *long]:
        frames[i] = grey
    source_path = write_video(tmp_path / "gaps.mp4", frames, FPS)
    source = SourceVideo(source_path.read_bytes(), SIZE, SIZE, FPS)
    inputs = _dub_inputs(source, source_path, other_speech.audio[: 100 * ENGINE_SAMPLE_RATE // FPS])
    engine.prepare(inputs, lambda f: None)
    out = list(engine.frames(inputs, lambda f: None))
    assert len(out) == inputs.frames == 100
    assert engine.notes == ["speaker 1: no face on 30 of 100 frames: they keep the source's mouth"]
    for i in long:
        assert np.array_equal(out[i], source.frame(i))
    source.close()


def test_a_video_without_a_face_is_refused_naming_the_field(tmp_path: Path, dubbed: Dub) -> None:
    blank = write_video(tmp_path / "wall.mp4", (np.full((SIZE, SIZE, 3), 90 + i, np.uint8) for i in range(10)))
    with pytest.raises(InvalidInput) as err:
        _render(tmp_path / "out.mp4", dubbed.source.with_name("second.wav"), sourceVideo=str(blank))
    assert err.value.field == "sourceVideo" and "no usable face in any frame" in err.value.message


def test_landmark_gaps_fill_linearly_and_smoothing_keeps_a_straight_track() -> None:
    t = np.arange(20, dtype=np.float32)
    track = np.stack([t, 2 * t], axis=1)[:, None, :].repeat(3, axis=1)  # (20, 3, 2): a steady move
    track[5:8] = np.nan  # 3 frames: filled
    track[12:18] = np.nan  # 6 frames: longer than max_gap
    out = fill_and_smooth(track, max_gap=4, radius=2)
    assert np.allclose(out[5:8, 0], np.stack([t[5:8], 2 * t[5:8]], axis=1))
    assert np.isnan(out[12:18]).all()
    inner = [i for i in range(2, 10)]  # whole windows inside the filled run: a straight line is kept
    assert np.allclose(out[inner, 0], np.stack([t[inner], 2 * t[inner]], axis=1), atol=1e-5)


def test_two_speakers_each_dub_their_own_face(
    tmp_path: Path, engine: LiteEngine, finder: FaceFinder, portrait: Image, speech: Speech, other_speech: Speech
) -> None:
    """A video of two people (the astronaut and her mirror image), voices taking turns: during each
    turn only the speaking face's mouth moves; the other keeps its resting mouth."""
    pair = np.ascontiguousarray(np.concatenate([portrait, portrait[:, ::-1]], axis=1))  # 960 x 480
    turn = 2 * ENGINE_SAMPLE_RATE
    first = np.concatenate([speech.audio[:turn], np.zeros(turn, np.float32)])
    second = np.concatenate([np.zeros(turn, np.float32), other_speech.audio[:turn]])
    path = write_video(tmp_path / "pair.mp4", (pair for _ in range(10)), FPS)  # a still shot, held
    source = SourceVideo(path.read_bytes(), pair.shape[1], pair.shape[0], FPS)
    inputs = make_inputs(pair, [first, second], fps=FPS)
    inputs = dataclasses.replace(
        inputs, request=inputs.request.model_copy(update={"image": None, "source_video": str(path)}), source=source
    )
    engine.prepare(inputs, lambda f: None)
    frames = list(engine.frames(inputs, lambda f: None))
    half = pair.shape[1] // 2
    openings = np.array(
        [[mouth_opening(finder.mesh(np.ascontiguousarray(f[:, s]))[0]) for s in (slice(0, half), slice(half, None))]
         for f in frames]
    )  # fmt: skip
    edge = round(turn / ENGINE_SAMPLE_RATE * FPS)
    left_turn, right_turn = openings[3 : edge - 3], openings[edge + 3 : -3]
    assert left_turn[:, 0].std() > 4 * left_turn[:, 1].std(), openings
    assert right_turn[:, 1].std() > 4 * right_turn[:, 0].std(), openings
