"""The runner's pure logic, and the publish step's race protection, in process."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from runner_support import Media, S3Server, write_audio

from multitalk.runner.audio import DecodedSpeech, build_timeline, decode_speech
from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE, Availability, Engine
from multitalk.runner.engines.placeholder import envelope, frame_levels
from multitalk.runner.engines.registry import ENGINES, create_engine
from multitalk.runner.errors import EngineUnavailable, InvalidInput, Retryable, StorageRefused, decoding
from multitalk.runner.image import check_bbox, load_portrait, upright_size
from multitalk.runner.outputs import OutputSet, Publisher
from multitalk.runner.pipeline import select_engine
from multitalk.runner.progress_display import overall_percent
from multitalk.runner.request import OutputSpec, RenderRequest, StorageSpec, field_path
from multitalk.runner.storage import read_input


def _speech(seconds: float, value: float = 0.5, mux_rate: int = 22050) -> DecodedSpeech:
    return DecodedSpeech(
        engine=np.full(round(seconds * ENGINE_SAMPLE_RATE), value, np.float32),
        mux=np.full(round(seconds * mux_rate), value, np.float32),
        mux_rate=mux_rate,
        source_rate=mux_rate,
        source_channels=1,
        codec="pcm_s16le",
    )


def test_sequential_places_speakers_one_after_the_other() -> None:
    tl = build_timeline([_speech(1.0, 0.5), _speech(0.5, -0.25)], "sequential", None, 10)
    assert tl.duration_seconds == pytest.approx(1.5)
    first, second = tl.speech
    assert len(first) == len(second) == len(tl.mix) == 24_000
    assert first[:16_000].min() == 0.5 and not first[16_000:].any()
    assert not second[:16_000].any() and second[16_000:].max() == -0.25
    assert len(tl.mux) == round(1.5 * 22050)


def test_simultaneous_overlays_and_never_clips() -> None:
    tl = build_timeline([_speech(1.0, 0.75), _speech(0.5, 0.75)], "simultaneous", None, 10)
    assert tl.duration_seconds == pytest.approx(1.0)
    assert float(np.abs(tl.mix).max()) <= 1.0
    assert tl.mix[0] == pytest.approx(1.0)  # 1.5 scaled down to full scale
    assert tl.mix[-1] == pytest.approx(0.5)  # where only speaker 1 talks, scaled alike


def test_duration_trims_and_pads() -> None:
    assert len(build_timeline([_speech(1.0)], "sequential", 0.25, 10).mix) == 4_000
    padded = build_timeline([_speech(1.0)], "sequential", 3.0, 10)
    assert len(padded.mix) == 48_000 and not padded.mix[16_000:].any()


def test_timeline_over_the_limit_names_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        build_timeline([_speech(1.0), _speech(1.0)], "sequential", None, 1.5)
    assert info.value.field == "video.maxDurationSeconds"


def test_frame_levels_follow_the_speech() -> None:
    mix = np.zeros(ENGINE_SAMPLE_RATE, np.float32)
    mix[8_000:] = 0.5
    levels = frame_levels(mix, fps=10, frames=10)
    assert (levels[:5] == 0).all() and (levels[5:] > 0.8).all()
    env = envelope(np.array([0, -0.5, 0.25, 0, 1], np.float32), 2)
    assert env.tolist() == [0.5, 0.25, 1.0]


def test_progress_percent_is_of_the_whole_render() -> None:
    assert overall_percent("download", 0.0) == 0
    assert overall_percent("generate", 0.5) == 55
    assert overall_percent("done", 1.0) == 100
    assert overall_percent("generate", 7.0) == 95  # clamped


def test_output_set_and_field_names() -> None:
    assert OutputSet.for_video("s3://b/x/v.mp4") == OutputSet("s3://b/x/v.mp4", "s3://b/x/v.png", "s3://b/x/v.json")
    assert field_path(("speakers", 1, "audio")) == "speakers[1].audio"
    assert field_path(("video", "duration_seconds"), "spec") == "spec.video.durationSeconds"


def _req(**fields: object) -> RenderRequest:
    return RenderRequest.model_validate({"speakers": [{"audio": "a.wav"}], "output": {"uri": "o.mp4"}, **fields})


def test_engine_selection(tmp_path: Path) -> None:
    engine, reason = select_engine(_req(engine="placeholder"), tmp_path)
    assert engine.name == "placeholder" and reason is None
    with_image = _req(engine="auto", image="face.jpg")
    usable = [n for n in ENGINES if _accepts(*create_engine(n, tmp_path), with_image)]
    auto, why = select_engine(with_image, tmp_path)
    assert auto.name == usable[0]  # the best one that can run here and accepts the request
    assert (why is None) == (auto.name == next(iter(ENGINES)))  # skipping a better engine is never silent
    unavailable = [n for n in ENGINES if not create_engine(n, tmp_path)[1].available]
    for name in unavailable:
        with pytest.raises(EngineUnavailable) as info:
            select_engine(_req(engine=name, image="face.jpg"), tmp_path)
        assert info.value.field == "engine" and "allowFallback" in info.value.message
        fallback, why = select_engine(_req(engine=name, image="face.jpg", allowFallback=True), tmp_path)
        assert fallback.name != name and why is not None and why.startswith(f"{name} unavailable")


def _accepts(engine: Engine | None, avail: Availability, request: RenderRequest) -> bool:
    if engine is None or not avail.available:
        return False
    try:
        engine.validate(request)
    except InvalidInput:
        return False
    return True


def test_data_uri_is_bounded_before_decoding() -> None:
    payload = base64.b64encode(b"x" * 3000).decode()
    assert read_input(f"data:audio/wav;base64,{payload}", "f", 3000, StorageSpec()) == b"x" * 3000
    with pytest.raises(InvalidInput, match="at most 2999 bytes"):
        read_input(f"data:audio/wav;base64,{payload}", "f", 2999, StorageSpec())
    with pytest.raises(InvalidInput, match="base64"):
        read_input("data:audio/wav,plain", "f", 10, StorageSpec())


def test_local_publish_refuses_a_video_that_appeared_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    publisher = Publisher(OutputSpec(uri=str(target)), StorageSpec())
    publisher.preflight()
    scratch = publisher.scratch_video()
    scratch.write_bytes(b"new video")
    target.write_bytes(b"someone else's video")  # a concurrent render won the race
    with pytest.raises(StorageRefused):
        publisher.publish(scratch, b"png", b"{}")
    assert target.read_bytes() == b"someone else's video"
    assert not scratch.exists()


def test_s3_publish_is_conditional_when_overwrite_is_off(
    s3: S3Server, media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3.writer.items():
        monkeypatch.setenv(key, value)  # the runner reads credentials from the environment
    uri = f"s3://{s3.bucket}/race/v.mp4"
    publisher = Publisher(OutputSpec(uri=uri), StorageSpec(endpoint=s3.endpoint, region="us-east-1"))
    publisher.preflight()
    scratch = tmp_path / "v.mp4"
    scratch.write_bytes(media.short.read_bytes())
    s3.client().put_object(Bucket=s3.bucket, Key="race/v.mp4", Body=b"someone else's video")
    with pytest.raises(StorageRefused) as info:
        publisher.publish(scratch, b"png", b"{}")
    assert info.value.field == "output.uri"
    body = s3.client().get_object(Bucket=s3.bucket, Key="race/v.mp4")["Body"].read()
    assert body == b"someone else's video"
    uploads = s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert not [u for u in uploads if u["Key"] == "race/v.mp4"]  # the failed upload was aborted


def test_bbox_must_lie_on_the_image() -> None:
    size = (512, 384)  # width x height
    check_bbox((10, 20, 300, 400), size, "speakers[0].bbox")
    check_bbox((300, 450, 420, 560), size, "speakers[0].bbox")  # overhangs by less than 10% of each side
    with pytest.raises(InvalidInput, match=r"\[0, 0, 5000, 5000\] reaches far past the image: the image is 512x384"):
        check_bbox((0, 0, 5000, 5000), size, "speakers[0].bbox")
    with pytest.raises(InvalidInput, match="lies outside the image") as info:
        check_bbox((390, 10, 420, 60), size, "speakers[1].bbox")  # below the bottom edge
    assert info.value.field == "speakers[1].bbox"


def test_a_truncated_jpeg_header_is_invalid_input_in_every_image_function(media: Media) -> None:
    cut = media.portrait.read_bytes()[:300]  # inside the Huffman tables: Pillow raises OSError
    with pytest.raises(InvalidInput, match="corrupt image file") as info:
        upright_size(cut, "image")
    assert info.value.field == "image"
    with pytest.raises(InvalidInput, match="corrupt image file"):
        load_portrait(cut, "image", 64, 64)
    assert upright_size(media.portrait.read_bytes(), "image") == (512, 512)


def test_speech_outside_speech_sample_rates_is_refused(tmp_path: Path) -> None:
    t = np.arange(4000) / 4000
    low = write_audio(tmp_path / "low.wav", (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 4000)
    with pytest.raises(InvalidInput, match=r"sample rate of 4000 Hz; speech needs 8000\.\.384000 Hz"):
        decode_speech(low.read_bytes(), "speakers[0].audio", 60)


def test_speech_whose_channel_mode_changes_mid_stream_decodes(tmp_path: Path) -> None:
    # Each MP3 frame carries its own channel mode, so a mono clip followed by a stereo one is
    # one valid stream; a resampler takes one input layout only (this raised ValueError, exit 1).
    t = np.arange(8000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    mono = write_audio(tmp_path / "mono.mp3", tone, 16000, codec="libmp3lame").read_bytes()
    stereo = write_audio(tmp_path / "stereo.mp3", tone, 16000, codec="libmp3lame", channels=2).read_bytes()
    id3 = 10 + ((stereo[6] << 21) | (stereo[7] << 14) | (stereo[8] << 7) | stereo[9])  # the tag heads a file only
    speech = decode_speech(mono + stereo[id3:], "speakers[0].audio", 60)
    assert 0.9 < speech.seconds < 1.2
    assert float(np.max(np.abs(speech.engine[int(0.8 * ENGINE_SAMPLE_RATE) :]))) > 0.3  # the stereo half is there


def test_decoder_errors_name_the_field_and_the_runners_own_errors_pass_through() -> None:
    with pytest.raises(InvalidInput, match="is bad: OSError: Truncated File Read") as info, decoding("image", "is bad"):
        raise OSError("Truncated File Read")
    assert info.value.field == "image"
    with pytest.raises(Retryable, match="SIGTERM"), decoding("image", "is bad"):
        raise Retryable("terminated by SIGTERM")  # what the runner's handler raises inside a decoder call


def test_unusable_local_paths_are_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    for path in (tmp_path / ("x" * 300 + ".wav"), tmp_path / "file" / "a.wav"):  # too long; a file as a folder
        with pytest.raises(InvalidInput, match="is not a usable path") as info:
            read_input(str(path), "speakers[0].audio", 100, StorageSpec())
        assert info.value.field == "speakers[0].audio"
