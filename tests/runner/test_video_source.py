"""The source video of a dub: frames on the output's grid, and clear refusals of unusable files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from video_samples import index_of, marked_frame, rotate_tag, write_video, write_wav

from multitalk.runner.errors import InvalidInput
from multitalk.runner.request import RenderRequest, describe_validation_error
from multitalk.runner.video_source import MAX_SOURCE_PIXELS, SourceVideo, probe

CLI = Path(sys.executable).with_name("multitalk-runner")


def _video(tmp_path: Path, count: int, fps: int = 25, size: tuple[int, int] = (64, 48), **kw: object) -> bytes:
    frames = (marked_frame(i, *size) for i in range(count))
    return write_video(tmp_path / "source.mp4", frames, fps, **kw).read_bytes()  # type: ignore[arg-type]


def _shown(times_ms: list[int], fps: int, index: int) -> int:
    """The source frame on screen at the middle of output frame `index`."""
    middle = (index + 0.5) * 1000 / fps
    return max(k for k, t in enumerate(times_ms) if t <= middle)


def test_frames_follow_the_source_and_hold_its_last_frame(tmp_path: Path) -> None:
    source = SourceVideo(_video(tmp_path, 10), 64, 48, 25)
    assert [index_of(source.frame(i)) for i in range(14)] == [*range(10), 9, 9, 9, 9]
    assert source.exhausted
    assert index_of(source.frame(3)) == 3  # an earlier frame (a resumed render) reopens the stream
    source.close()


def test_another_output_rate_shows_what_a_player_shows(tmp_path: Path) -> None:
    source = SourceVideo(_video(tmp_path, 12, fps=10), 64, 48, 25)
    times = [k * 100 for k in range(12)]
    assert [index_of(source.frame(i)) for i in range(30)] == [_shown(times, 25, i) for i in range(30)]


def test_variable_frame_rate_is_resampled_by_timestamps(tmp_path: Path) -> None:
    gaps = [60, 20, 20, 100, 40, 10, 30, 80, 40, 40]
    times = [sum(gaps[:k]) for k in range(len(gaps))]
    source = SourceVideo(_video(tmp_path, len(times), times_ms=times), 64, 48, 25)
    assert [index_of(source.frame(i)) for i in range(16)] == [_shown(times, 25, i) for i in range(16)]


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_rotated_phone_video_is_shown_upright(tmp_path: Path, degrees: int) -> None:
    data = rotate_tag(_video(tmp_path, 3, size=(64, 48)), degrees)
    info = probe(data)
    assert info.upright_size == ((48, 64) if degrees in (90, 270) else (64, 48))
    width, height = info.upright_size
    frame = SourceVideo(data, width, height, 25).frame(0)
    red = frame[..., 0].astype(int) - frame[..., 1]
    corners = {
        "top-left": red[:4, :4].mean(),
        "top-right": red[:4, -4:].mean(),
        "bottom-left": red[-4:, :4].mean(),
        "bottom-right": red[-4:, -4:].mean(),
    }
    # The red block sits top-left as stored; turning the picture clockwise moves it round.
    expected = {90: "top-right", 180: "bottom-right", 270: "bottom-left"}[degrees]
    assert max(corners, key=lambda k: corners[k]) == expected, corners


def test_a_4k_source_is_scaled_to_the_output(tmp_path: Path) -> None:
    source = SourceVideo(_video(tmp_path, 2, size=(3840, 2160)), 320, 180, 25)
    frame = source.frame(1)
    assert frame.shape == (180, 320, 3) and index_of(frame) == 1


def test_frames_beyond_4k_are_refused_from_the_header(tmp_path: Path) -> None:
    data = _video(tmp_path, 1, size=(7680, 4320))
    with pytest.raises(InvalidInput) as err:
        probe(data)
    assert err.value.field == "sourceVideo" and "7680x4320" in err.value.message
    assert f"{MAX_SOURCE_PIXELS / 1e6:.1f} megapixels" in err.value.message


@pytest.mark.parametrize(
    ("name", "words"),
    [("audio-only", "has no video stream"), ("garbage", "not a readable video"), ("empty", "is empty")],
)
def test_files_that_are_not_videos_are_refused(tmp_path: Path, name: str, words: str) -> None:
    data = {
        "audio-only": write_wav(tmp_path / "speech.wav").read_bytes(),
        "garbage": bytes(range(256)) * 64,
        "empty": b"",
    }[name]
    with pytest.raises(InvalidInput) as err:
        SourceVideo(data, 64, 48, 25)
    assert err.value.field == "sourceVideo" and words in err.value.message


def test_a_request_gives_image_or_source_video_not_both() -> None:
    with pytest.raises(ValidationError) as err:
        RenderRequest.model_validate(
            {
                "image": "face.jpg",
                "sourceVideo": "talk.mp4",
                "speakers": [{"audio": "a.wav"}],
                "output": {"uri": "o.mp4"},
            }
        )
    assert describe_validation_error(err.value).startswith("sourceVideo: give either image")


def test_the_cli_refuses_an_audio_file_as_source_video_with_exit_3(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav")
    result = tmp_path / "result.json"
    out = tmp_path / "out" / "dub.mp4"
    proc = subprocess.run(
        [str(CLI), "render", "--engine", "placeholder", "--audio", str(wav), "--source-video", str(wav),
         "--out", str(out), "--result", str(result)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    error = json.loads(result.read_text())["error"]
    assert error["field"] == "sourceVideo" and "no video stream" in error["message"]
    assert not out.exists()


def test_a_dub_is_as_long_as_its_speech(tmp_path: Path) -> None:
    """The placeholder renders a dub of a 0.4 s source to 1 s of speech: 25 frames."""
    source = write_video(tmp_path / "source.mp4", (marked_frame(i, 64, 64) for i in range(10)))
    wav = write_wav(tmp_path / "speech.wav", seconds=1.0)
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [str(CLI), "render", "--engine", "placeholder", "--audio", str(wav), "--source-video", str(source),
         "--width", "64", "--height", "64", "--out", str(tmp_path / "dub.mp4"), "--result", str(result)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = json.loads(result.read_text())["output"]
    assert output["frames"] == 25 and np.isclose(output["durationSeconds"], 1.0, atol=0.05)
