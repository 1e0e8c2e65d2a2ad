"""The fuzz targets: one input through the runner's own decoding path, as a render takes it.

Each target returns True when the runner accepts the input, False when it refuses it as
InvalidInput (exit 3) naming a field. Anything else escaping (another exception: exit 1, a retry of a
permanent fault) is a finding; so is a refusal without a field. The targets are shared by
the coverage-guided fuzzer (fuzz.py, atheris) and the regression tests
(test_fuzz_regressions.py), which replay the seeds and every committed finding.
"""

from __future__ import annotations

from collections.abc import Callable

from multitalk.runner.audio import decode_speech
from multitalk.runner.cli import parse_request_json, validate_request
from multitalk.runner.errors import InvalidInput, StorageRefused
from multitalk.runner.image import check_bbox, fitted_box, load_portrait, upright_size
from multitalk.runner.pipeline import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES
from multitalk.runner.request import StorageSpec, uri_scheme
from multitalk.runner.storage import read_input
from multitalk.runner.video_source import SourceVideo

# What the fuzzed request is checked against at run time: a portrait of this size.
IMAGE_SIZE = (512, 512)
FRAME = (96, 64)  # not square: the fit crops
MAX_SECONDS = 10.0


def _refused(exc: InvalidInput) -> bool:
    if not exc.field:
        raise AssertionError(f"refusal names no field: {exc.message}") from exc
    return False


def image(data: bytes) -> bool:
    """The portrait: its header size for the bboxes, then decoded and fitted to the frame."""
    try:
        size = upright_size(data, "image")
        check_bbox((0.0, 0.0, size[1] / 2, size[0] / 2), size, "speakers[0].bbox")
        frame = load_portrait(data, "image", *FRAME)
    except InvalidInput as exc:
        return _refused(exc)
    assert frame.shape == (FRAME[1], FRAME[0], 3), frame.shape
    return True


def audio(data: bytes) -> bool:
    """One speaker's speech."""
    try:
        speech = decode_speech(data, "speakers[0].audio", MAX_SECONDS)
    except InvalidInput as exc:
        return _refused(exc)
    assert speech.seconds <= MAX_SECONDS + 0.05, speech.seconds
    return True


def video(data: bytes) -> bool:
    """A dub's source video: header bounds, then the first frames on the output grid, fitted."""
    try:
        source = SourceVideo(data, *FRAME, 25)
        try:
            frames = [source.frame(i) for i in range(6)]
        finally:
            source.close()
    except InvalidInput as exc:
        return _refused(exc)
    assert all(f.shape == (FRAME[1], FRAME[0], 3) for f in frames), frames[0].shape
    return True


def request(data: bytes) -> bool:
    """MULTITALK_REQUEST as the operator sets it: JSON, the request models, inputs readable without a
    network (data:, local paths, file://), bboxes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False  # an environment variable is text; a --request file that is not is refused on reading
    try:
        req = validate_request(parse_request_json(text, "MULTITALK_REQUEST"))
        inputs = [(s.audio, f"speakers[{i}].audio", MAX_AUDIO_BYTES) for i, s in enumerate(req.speakers)]
        if req.image is not None:
            inputs.append((req.image, "image", MAX_IMAGE_BYTES))
        for uri, field, limit in inputs:
            if uri_scheme(uri) in ("data", "file", ""):  # readable without a network
                try:
                    read_input(uri, field, limit, StorageSpec())
                except StorageRefused as exc:  # a path that is not there: exit 5, permanent too
                    assert exc.field == field, exc
        for i, s in enumerate(req.speakers):
            if s.bbox is not None:
                check_bbox(s.bbox, IMAGE_SIZE, f"speakers[{i}].bbox")
                fitted_box(s.bbox, IMAGE_SIZE, (req.video.width, req.video.height))
    except InvalidInput as exc:
        return _refused(exc)
    assert validate_request(req.wire()) == req  # what the runner accepted survives its own wire format
    return True


TARGETS: dict[str, Callable[[bytes], bool]] = {"image": image, "audio": audio, "video": video, "request": request}
