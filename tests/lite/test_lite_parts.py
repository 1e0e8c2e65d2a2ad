"""The lite engine's pure parts: visemes, co-articulation, blinks, head motion, face assignment,
plus the registry entry and the optional wav2vec2 path."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from lite_helpers import Image, Speech, make_inputs

from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.engines.lite.coarticulation import Target, blend
from multitalk.runner.engines.lite.features import SpeechFeatures, frame_features
from multitalk.runner.engines.lite.landmarks import Face, FaceFinder
from multitalk.runner.engines.lite.motion import blink_track, head_track
from multitalk.runner.engines.lite.phonemes import Phone, normalise_transcript, quiet_cuts
from multitalk.runner.engines.lite.speakers import assign_faces, crop_limits
from multitalk.runner.engines.lite.timeline import mouth_track, phone_contact, phone_targets
from multitalk.runner.engines.lite.visemes import phone_viseme
from multitalk.runner.engines.registry import create_engine
from multitalk.runner.errors import InvalidInput


def test_visemes_follow_the_usual_groups() -> None:
    assert phone_viseme("M").shape[0] == 0.0 and phone_viseme("B").shape[4] == 1.0
    assert phone_viseme("AA").shape[0] > 0.9
    assert phone_viseme("UW").shape[2] > 0.9  # rounded
    assert phone_viseme("F").shape[3] == 1.0  # lip to teeth
    assert phone_viseme("AH1").name == phone_viseme("AH").name  # stress marks ignored
    assert phone_viseme("+NSN+").name == "rest"


def test_bilabial_closes_between_open_vowels() -> None:
    # "ama": the short M must still shut the lips although both neighbours are wide open.
    phones = [Phone("AA", 0.0, 0.2), Phone("M", 0.2, 0.26), Phone("AA", 0.26, 0.5)]
    shape = blend(phone_targets(phones), fps=100, frames=50, channels=5)
    assert shape[23, 4] > 0.7 and shape[23, 0] < 0.2  # at the M: closed
    assert shape[8, 0] > 0.8 and shape[40, 0] > 0.8  # in the vowels: open
    assert np.abs(np.diff(shape[:, 0])).max() < 0.25  # smooth, no jumps


def test_blend_rests_far_from_speech() -> None:
    shape = blend([Target(0.1, 0.05, (1.0, 0, 0, 0, 0), 1.0)], fps=25, frames=50, channels=5)
    assert shape[-1, 0] < 0.01


def test_blinks_rate_and_length() -> None:
    fps, minutes = 25, 4
    track = blink_track(fps * 60 * minutes, fps, per_minute=15, seed=3)
    starts = np.flatnonzero((track[1:] > 0.5) & (track[:-1] <= 0.5))
    assert 10 * minutes <= len(starts) <= 20 * minutes
    lengths = np.diff(np.flatnonzero(np.diff(track > 0.05)))[::2]
    assert lengths.max() <= 6  # frames: a blink is over in well under a quarter second
    assert not blink_track(1000, fps, 0.0, seed=3).any()
    assert np.array_equal(track, blink_track(fps * 60 * minutes, fps, 15, seed=3))  # reproducible


def test_head_motion_is_small_smooth_and_off_at_zero() -> None:
    loud = np.abs(np.sin(np.linspace(0, 40, 1500))).astype(np.float32)
    head = head_track(loud, 25, amount=1.0, seed=1)
    assert np.abs(head[:, 0]).max() < np.deg2rad(3)  # roll
    assert np.abs(head[:, 1:]).max() < 0.03  # shift, face heights
    assert np.abs(np.diff(head, axis=0)).max() < 0.004
    assert not head_track(loud, 25, amount=0.0, seed=1).any()


def _face_at(cx: float, cy: float, size: float, template: Face) -> Face:
    pts = template.points - np.array(template.center, dtype=np.float32)
    return Face((pts * (size / template.height) + np.array([cx, cy], dtype=np.float32)).astype(np.float32))


def test_assignment_left_to_right_and_by_bbox(finder: FaceFinder, portrait: Image) -> None:
    template = finder.mesh(portrait)[0]
    big_right = _face_at(700, 200, 150, template)
    small_left = _face_at(200, 220, 100, template)
    tiny = _face_at(450, 400, 40, template)
    faces = [big_right, small_left, tiny]  # largest first, as the finder returns them
    assert assign_faces(faces, [None, None]) == [small_left, big_right]
    assert assign_faces(faces, [None]) == [big_right]
    top, left, bottom, right = small_left.box
    assert assign_faces(faces, [None, (top, left, bottom, right)]) == [big_right, small_left]
    with pytest.raises(InvalidInput) as info:
        assign_faces([big_right], [None, None])
    assert info.value.field == "image"
    limits = crop_limits([small_left, big_right], 960)
    assert limits[0][1] == limits[1][0] and small_left.box[3] <= limits[0][1] <= big_right.box[1]


def test_transcript_normalisation_and_quiet_cuts() -> None:
    assert normalise_transcript("Don’t stop, Bob!  It's 5 o'clock.") == ["don't", "stop", "bob", "it's", "o'clock"]
    audio = np.random.default_rng(0).normal(0, 0.1, 16_000 * 50).astype(np.float32)
    audio[16_000 * 17 : 16_000 * 17 + 800] = 0.0  # a pause at 17 s
    cuts = quiet_cuts(audio, 16_000, 20.0)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))
    assert abs(cuts[0][1] - 16_000 * 17) < 1000


def test_registry_finds_lite() -> None:
    engine, availability = create_engine("lite", Path("/nonexistent-model-cache"))
    assert isinstance(engine, LiteEngine)
    assert availability.available, availability.reason
    assert availability.details["wav2vec2"] == "not found (optional)"


def test_unknown_words_fall_back_to_phone_decoding(engine: LiteEngine, portrait: Image, speech: Speech) -> None:
    inputs = make_inputs(portrait, [speech.audio], transcripts=["zzyzzx qwrtp"])
    engine.prepare(inputs, lambda _: None)
    assert engine.methods == ["decoded"]
    assert "not in the dictionary" in engine.notes[0]


def test_wav2vec2_letters_drive_the_mouth(tmp_path: Path, portrait: Image, speech: Speech) -> None:
    """A tiny randomly initialised CTC model in the model cache switches the engine to letter posteriors."""
    pytest.importorskip("torch", reason="torch comes with the multitalk extra")
    transformers = pytest.importorskip("transformers", reason="transformers comes with the multitalk extra")
    letters = ["<pad>", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ'"]
    config = transformers.Wav2Vec2Config(
        vocab_size=len(letters),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 16),  # 320 samples per step: 20 ms at 16 kHz, as in wav2vec2-base
        conv_kernel=(10, 8, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    model_dir = tmp_path / "models"
    path = model_dir / "lite" / "wav2vec2"
    transformers.Wav2Vec2ForCTC(config).save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(letters)}))

    engine = LiteEngine(model_dir)
    assert engine.availability().details["wav2vec2"] == str(path)
    try:
        inputs = make_inputs(portrait, [speech.audio], model_dir=model_dir)
        info = engine.prepare(inputs, lambda _: None)
        assert engine.methods == ["letters"]
        assert any(m.startswith("wav2vec2-ctc:") for m in info.models)
        frames = list(engine.frames(inputs, lambda _: None))
        assert len(frames) == inputs.frames
        # An untrained model still yields a valid, bounded, silence-gated track.
        track = engine.tracks[0]
        assert np.isfinite(track).all() and track[:, 0].max() <= 1.0
        assert track[:5, 0].max() < 0.05  # the leading half second of silence keeps the mouth at rest
        # With a transcript, forced alignment takes precedence.
        engine.prepare(
            make_inputs(portrait, [speech.audio], transcripts=[speech.transcript], model_dir=model_dir), print
        )
        assert engine.methods == ["aligned"]
    finally:
        engine.close()


def test_closed_and_parted_lips_in_the_photo(engine: LiteEngine, portrait: Image, speech: Speech) -> None:
    """The astronaut smiles with teeth (parted: M/B/P must close them); a frame with her lips pressed
    shut, used as the photo, is closed (nothing to close, teeth painted when the jaw opens)."""
    inputs = make_inputs(portrait, [speech.audio], transcripts=[speech.transcript], lite={"headMotion": 0})
    engine.prepare(inputs, lambda _: None)
    assert engine.warps[0].parted and engine.warps[0].ref_gap > 0
    closed_index = int(np.argmax(engine.tracks[0][:, 4]))
    shut = next(f for i, f in enumerate(engine.frames(inputs, lambda _: None)) if i == closed_index)
    engine.prepare(make_inputs(shut, [speech.audio]), lambda _: None)
    assert not engine.warps[0].parted and engine.warps[0].ref_gap == 0.0


def _vowel(seconds: float, formant_hz: float, rate: int = 16_000) -> np.ndarray:
    """A voiced sound: harmonics of 120 Hz shaped by one formant."""
    t = np.arange(int(seconds * rate)) / rate
    harmonics = np.arange(120.0, 4000.0, 120.0)
    gains = np.exp(-(((harmonics - formant_hz) / 180.0) ** 2)) + 0.02
    return (
        0.3 * np.sum(gains[:, None] * np.sin(2 * np.pi * harmonics[:, None] * t[None, :]), axis=0) / gains.sum()
    ).astype(np.float32)


def test_closure_in_a_stop_gap_not_in_frication() -> None:
    rate = 16_000
    noise = np.random.default_rng(0).normal(0, 0.05, int(0.08 * rate)).astype(np.float32)
    hiss = np.diff(noise, prepend=0.0).astype(np.float32)  # high-passed: an S-like hiss
    gap = np.zeros(int(0.08 * rate), dtype=np.float32)
    vowel = _vowel(0.25, 700.0)
    audio = np.concatenate([gap, gap, vowel, gap, vowel, hiss, vowel, gap, gap])
    features = frame_features(audio, rate, fps=100, frames=len(audio) // 160)

    def at(seconds: float) -> float:
        return float(features.closure[int(seconds * 100)])

    assert at(0.16 + 0.25 + 0.04) > 0.9  # the silent gap between two vowels: a stop's closure
    assert at(0.16 + 0.25 + 0.08 + 0.25 + 0.04) < 0.2  # the hiss between two vowels: lips open
    assert at(0.16 + 0.12) < 0.1  # inside a vowel
    assert at(0.12) > 0.9  # the quiet just before speech starts: lips meet before a word
    assert at(0.02) < 0.1  # long before it: the photo's own rest


def test_openness_follows_the_first_formant() -> None:
    rate = 16_000
    audio = np.concatenate([_vowel(0.3, 750.0), _vowel(0.3, 300.0)])  # "a" then "i"/"u"
    features = frame_features(audio, rate, fps=25, frames=15)
    assert features.openness[3] > 0.8 and features.openness[11] < 0.2


def test_contact_holds_every_bilabial_for_a_frame_at_least() -> None:
    phones = [Phone("AA", 0.0, 0.2), Phone("P", 0.2, 0.23), Phone("AE", 0.23, 0.5), Phone("T", 0.5, 0.56)]
    contact = phone_contact(phones, fps=25, frames=15)
    assert contact[5] == 1.0  # the 30 ms P, shorter than a frame
    assert contact.sum() == 1.0  # nothing for the vowels or the T


def test_contact_presses_the_lips_over_the_visemes() -> None:
    phones = [Phone("AA", 0.0, 0.4)]
    loud = np.ones(10, dtype=np.float32)
    features = SpeechFeatures(loudness=loud, sibilance=0 * loud, openness=loud, closure=0 * loud)
    contact = np.zeros(10, dtype=np.float32)
    contact[5] = 1.0
    shape = mouth_track(phone_targets(phones), features, 25, 10, contact, acoustic=0.5)
    assert shape[5, 0] == 0.0 and shape[5, 4] == 1.0
    assert shape[2, 0] > 0.8 and shape[2, 4] == 0.0
