"""The lite engine: a talking portrait on the CPU, faster than real time.

prepare(): landmarks on the reference image, one face per speaker, warp fields per face,
and per speaker a motion track (mouth shapes from phones + energy, blinks, head motion).
frames(): per frame, each face's crop is warped from the reference with that frame's
motion; everything else is the reference image untouched.

A dub (sourceVideo, dubbing.py) tracks the faces on every source frame instead and
re-shapes only the mouth of each frame; blinks and head motion are the source's.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.base import (
    ENGINE_SAMPLE_RATE,
    Availability,
    Engine,
    EngineInfo,
    Image,
    ProgressFn,
    RenderInputs,
)
from multitalk.runner.engines.lite.dubbing import (
    FaceTracks,
    RestingMouth,
    frame_faces,
    resting_mouths,
    source_frame,
    track_faces,
)
from multitalk.runner.engines.lite.features import frame_features
from multitalk.runner.engines.lite.landmarks import FaceFinder, check_face, explain_no_face
from multitalk.runner.engines.lite.motion import blink_track, head_track
from multitalk.runner.engines.lite.phonemes import PhoneRecognizer
from multitalk.runner.engines.lite.speakers import assign_faces, crop_limits
from multitalk.runner.engines.lite.timeline import letter_targets, mouth_track, phone_contact, phone_targets
from multitalk.runner.engines.lite.warp import BLINK, CHANNELS, ROLL, FaceWarp
from multitalk.runner.engines.lite.wav2vec import LetterModel, find_model
from multitalk.runner.errors import InvalidInput
from multitalk.runner.request import RenderRequest

# How much the jaw follows the F1 cue (features.py) rather than guessed phones' visemes.
_ACOUSTIC_OPENING = 0.65
_REQUIRED = ("mediapipe", "cv2", "pocketsphinx")
# Files inside the mediapipe wheel that the face mesh needs (newer mediapipe releases ship none).
_MESH_FILES = (
    "modules/face_landmark/face_landmark.tflite",
    "modules/face_detection/face_detection_short_range.tflite",
    "modules/face_detection/face_detection_full_range_sparse.tflite",
)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


class LiteEngine(Engine):
    name = "lite"
    resumable = True  # a frame is a function of prepare()'s tracks (seeded) and its index

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self._finder: FaceFinder | None = None
        self._phones: PhoneRecognizer | None = None
        self._letters: LetterModel | None = None
        self._warps: list[FaceWarp] = []
        self._tracks: list[npt.NDArray[np.float32]] = []
        self._faces: FaceTracks | None = None  # a dub: landmarks of every source frame
        self._resting: list[RestingMouth] = []  # a dub: each speaker's resting frame, animated
        self.methods: list[str] = []  # per speaker: aligned | decoded | letters | silent (for tests, logs)
        self.notes: list[str] = []

    def availability(self) -> Availability:
        missing = [m for m in _REQUIRED if find_spec(m) is None]
        if missing:
            return Availability(False, f"missing {', '.join(missing)}: install the 'lite' extra")
        spec = find_spec("mediapipe")
        root = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else Path()
        absent = [f for f in _MESH_FILES if not (root / f).is_file()]
        if absent:
            return Availability(False, f"mediapipe {_version('mediapipe')} ships no face-mesh model ({absent[0]})")
        details: dict[str, object] = {
            "device": "cpu",
            "mediapipe": _version("mediapipe"),
            "pocketsphinx": _version("pocketsphinx"),
            "opencv": _version("opencv-contrib-python"),
        }
        ctc = find_model(self.model_dir)
        details["wav2vec2"] = str(ctc) if ctc else "not found (optional)"
        return Availability(True, "", details)

    def validate(self, request: RenderRequest) -> None:
        if request.image is None and request.source_video is None:
            raise InvalidInput(
                "the lite engine animates a portrait: give an image with the speaker's face "
                "(two faces for two speakers)",
                field="image",
            )

    def load(self, request: RenderRequest | None = None) -> None:
        if self._finder is None:
            self._finder = FaceFinder()
        if self._phones is None:
            self._phones = PhoneRecognizer()
        ctc = find_model(self.model_dir)
        if ctc is not None and self._letters is None:
            self._letters = LetterModel(ctc)

    def close(self) -> None:
        if self._finder is not None:
            self._finder.close()
            self._finder = None

    def prepare(self, inputs: RenderInputs, progress: ProgressFn) -> EngineInfo:
        self.load()
        assert self._finder is not None and self._phones is not None
        image = inputs.image
        if image is None:
            raise InvalidInput("the lite engine needs a portrait image", field="image")
        speakers = inputs.request.speakers
        self._faces = None
        if inputs.source is not None:
            bboxes = [s.bbox for s in speakers][: len(inputs.speech)]
            self._faces = track_faces(
                inputs.source, inputs.frames, inputs.fps, self._finder, bboxes, lambda f: progress(0.3 * f)
            )
            self.notes = [
                f"speaker {i + 1}: no face on {lost} of {inputs.frames} frames: they keep the source's mouth"
                for i, lost in enumerate(self._faces.lost)
                if lost
            ]
            self._warps = []
            self._resting = resting_mouths(inputs.source, self._faces, inputs.width)
            return self._prepare_tracks(inputs, progress, keep_notes=True)
        faces, unconfirmed = self._finder.find(image)
        if not faces:
            raise explain_no_face(image, unconfirmed)
        bboxes = [s.bbox for s in speakers][: len(inputs.speech)]
        if len(bboxes) == 1 and bboxes[0] is None:
            check_face(image, faces[0])  # one speaker: the largest face, judged on its own
        chosen = assign_faces(faces, bboxes)
        for i, face in enumerate(chosen):
            check_face(image, face, field="image" if bboxes[i] is None else f"speakers[{i}].bbox")
        progress(0.2)
        limits = crop_limits(chosen, inputs.width)
        self._warps = [FaceWarp(image, face, lim) for face, lim in zip(chosen, limits, strict=True)]
        progress(0.3)
        return self._prepare_tracks(inputs, progress)

    def _prepare_tracks(self, inputs: RenderInputs, progress: ProgressFn, keep_notes: bool = False) -> EngineInfo:
        """Per speaker, the motion track of every frame (mouth from the speech, blinks, head)."""
        assert self._phones is not None
        speakers = inputs.request.speakers
        lite, seed = inputs.request.lite, inputs.request.sampling.seed
        self._tracks, self.methods = [], []
        if not keep_notes:
            self.notes = []
        for i, speech in enumerate(inputs.speech):
            transcript = speakers[i].transcript if i < len(speakers) else None
            features = frame_features(speech, ENGINE_SAMPLE_RATE, inputs.fps, inputs.frames)
            if self._letters is not None and not (transcript and transcript.strip()):
                post = self._letters.posteriors(speech, ENGINE_SAMPLE_RATE)
                targets = letter_targets(post.probs, post.labels, post.step_seconds)
                contact = np.zeros(inputs.frames, dtype=np.float32)
                self.methods.append("letters")
            else:
                result = self._phones.recognise(speech, transcript)
                targets = phone_targets(result.phones)
                contact = phone_contact(result.phones, inputs.fps, inputs.frames)
                self.methods.append(result.method)
                if result.note:
                    self.notes.append(f"speaker {i + 1}: {result.note}")
            # Known phones (a transcript) say where lips meet and how far the jaw opens; guessed
            # ones lean on the language-independent cues.
            aligned = self.methods[-1] == "aligned"
            if not aligned:
                contact = np.maximum(contact, features.closure)
            acoustic = 0.0 if aligned else _ACOUSTIC_OPENING
            mouth = mouth_track(targets, features, inputs.fps, inputs.frames, contact, acoustic)
            blinks = blink_track(inputs.frames, inputs.fps, lite.blinks_per_minute, seed + 101 * i)
            head = head_track(features.loudness, inputs.fps, lite.head_motion, seed + 101 * i + 7)
            self._tracks.append(np.concatenate([mouth, blinks[:, None], head], axis=1).astype(np.float32))
            progress(0.3 + 0.7 * (i + 1) / len(inputs.speech))

        models = [f"mediapipe-face-mesh@{_version('mediapipe')}", f"pocketsphinx-en-us@{_version('pocketsphinx')}"]
        if self._letters is not None:
            models.append(f"wav2vec2-ctc:{self._letters.name}")
        return EngineInfo(
            device="cpu",
            precision="fp32",
            models=tuple(models),
            feature_shape=(len(self._tracks), inputs.frames, CHANNELS),
        )

    @property
    def warps(self) -> list[FaceWarp]:
        """The prepared faces (region = the only pixels a frame may differ in)."""
        return list(self._warps)

    @property
    def tracks(self) -> list[npt.NDArray[np.float32]]:
        return list(self._tracks)

    def frames(self, inputs: RenderInputs, progress: ProgressFn, start: int = 0, state: bytes = b"") -> Iterator[Image]:
        if inputs.source is not None:
            yield from self._dub_frames(inputs, progress, start)
            return
        image = inputs.image
        if image is None or not self._warps:
            raise RuntimeError("prepare() must run before frames()")
        expression = inputs.request.lite.expression
        every = max(1, inputs.frames // 100)
        for index in range(start, inputs.frames):
            frame = image.copy()
            for warp, track in zip(self._warps, self._tracks, strict=True):
                warp.render(frame, track[index], expression)
            yield frame
            if index % every == 0:
                progress(index / max(inputs.frames, 1))
        progress(1.0)

    def _dub_frames(self, inputs: RenderInputs, progress: ProgressFn, start: int) -> Iterator[Image]:
        """Each source frame with each known face's mouth re-shaped: warps built from that frame."""
        if inputs.source is None or self._faces is None:
            raise RuntimeError("prepare() must run before frames()")
        expression = inputs.request.lite.expression
        every = max(1, inputs.frames // 100)
        for index in range(start, inputs.frames):
            frame = source_frame(inputs.source, index)
            for speaker, face in frame_faces(self._faces, index):
                motion = self._tracks[speaker][index].copy()
                motion[BLINK] = 0.0  # the source's eyes and head, as filmed
                motion[ROLL:] = 0.0
                self._resting[speaker].render(frame, face, motion, expression)
            yield frame
            if index % every == 0:
                progress(index / max(inputs.frames, 1))
        progress(1.0)
