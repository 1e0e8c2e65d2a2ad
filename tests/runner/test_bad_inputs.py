"""Bad input: each case exits with its documented code, names the field, and leaves nothing
at the output key. The CLI runs as a subprocess, exactly as in the pod."""

from __future__ import annotations

import io
import json
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runner_support import Media, S3Server, run_cli, write_audio


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's calling card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Ctx:
    media: Media
    tmp: Path
    s3: S3Server

    def file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def s3_uri(self, key: str, data: bytes | None = None) -> str:
        if data is not None:
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=key, Body=data)
        return f"s3://{self.s3.bucket}/{key}"


@dataclass(frozen=True)
class Case:
    name: str
    code: int
    field: str
    build: Callable[[Ctx], dict[str, object]]  # request patch
    env: str = ""  # "writer" / "denied": S3 credentials for the runner
    s3_out: bool = False  # output to S3 instead of a local path
    message: str = ""  # a word the message must contain


def _jpeg_corrupt(ctx: Ctx) -> str:
    good = ctx.media.portrait.read_bytes()
    return ctx.file("corrupt.jpg", good[:600] + bytes(range(256)) * 8)


def _jpeg_marker_then_garbage(ctx: Ctx) -> str:
    # A JPEG start marker and an APP1 marker whose segment is cut short: Pillow raises OSError.
    return ctx.file("garbage.jpg", b"\xff\xd8" + b"\xff\xe1" + b"\xff" * 64)


def _jpeg_cut_in_header(ctx: Ctx) -> str:
    return ctx.file("cut.jpg", ctx.media.portrait.read_bytes()[:300])  # inside the Huffman tables


def _two_speakers(bbox0: list[float], bbox1: list[float]) -> Callable[[Ctx], dict[str, object]]:
    def build(c: Ctx) -> dict[str, object]:
        return {
            "image": str(c.media.portrait),
            "speakers": [{"audio": str(c.media.short), "bbox": bbox0}, {"audio": str(c.media.short), "bbox": bbox1}],
        }

    return build


def _tiny_png(ctx: Ctx) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (9, 9, 9)).save(buf, format="PNG")
    return ctx.file("tiny.png", buf.getvalue())


def _silence(ctx: Ctx) -> str:
    return str(write_audio(ctx.tmp / "silence.wav", np.zeros(16000, np.float32), 16000))


CASES = [
    Case("empty audio file", 3, "speakers[0].audio", lambda c: {"speakers": [{"audio": c.file("e.wav", b"")}]}),
    Case(
        "truncated wav",
        3,
        "speakers[0].audio",
        lambda c: {"speakers": [{"audio": c.file("t.wav", c.media.short.read_bytes()[:30])}]},
    ),
    Case(
        "text file named .wav",
        3,
        "speakers[0].audio",
        lambda c: {"speakers": [{"audio": c.file("notes.wav", b"hello, this is not audio\n" * 40)}]},
    ),
    Case("silence only", 3, "speakers[0].audio", lambda c: {"speakers": [{"audio": _silence(c)}]}, message="silent"),
    Case(
        "audio over the limit",
        3,
        "speakers[0].audio",
        lambda c: {"speakers": [{"audio": str(c.media.hello)}], "video": {"maxDurationSeconds": 1.0}},
        message="maxDurationSeconds",
    ),
    Case(
        "two speakers over the limit together",
        3,
        "video.maxDurationSeconds",
        lambda c: {
            "speakers": [{"audio": str(c.media.short)}, {"audio": str(c.media.short)}],
            "video": {"maxDurationSeconds": 2.0},
        },
    ),
    Case("corrupt jpeg", 3, "image", lambda c: {"image": _jpeg_corrupt(c)}),
    Case("jpeg start marker, then garbage", 3, "image", lambda c: {"image": _jpeg_marker_then_garbage(c)}),
    Case("jpeg cut inside its header", 3, "image", lambda c: {"image": _jpeg_cut_in_header(c)}, message="corrupt"),
    Case("1x1 image", 3, "image", lambda c: {"image": _tiny_png(c)}, message="1x1"),
    Case(
        "40000x40000 png header",
        3,
        "image",
        lambda c: {"image": c.file("bomb.png", png_header_only(40000, 40000))},
        message="megapixels",
    ),
    Case(
        "gif is not accepted", 3, "image", lambda c: {"image": c.file("x.gif", b"GIF89a" + b"\0" * 64)}, message="jpeg"
    ),
    Case("unknown URI scheme", 3, "speakers[0].audio", lambda c: {"speakers": [{"audio": "ftp://host/a.wav"}]}),
    Case(
        "bad base64 data URI", 3, "speakers[0].audio", lambda c: {"speakers": [{"audio": "data:audio/wav;base64,@@"}]}
    ),
    Case("negative fps", 3, "video.fps", lambda c: {"video": {"fps": -5}}),
    Case("odd width", 3, "video.width", lambda c: {"video": {"width": 481}}, message="even"),
    Case(
        "bbox rows first", 3, "speakers[0].bbox", lambda c: {"speakers": [{"audio": "a.wav", "bbox": [50, 0, 10, 9]}]}
    ),
    Case(
        "identical bboxes",
        3,
        "speakers",
        _two_speakers([100, 100, 300, 300], [100, 100, 300, 300]),
        message="speakers[0]",
    ),
    Case(
        "bbox far outside the 512x512 image",
        3,
        "speakers[0].bbox",
        lambda c: {
            "image": str(c.media.portrait),
            "speakers": [{"audio": str(c.media.short), "bbox": [0, 0, 5000, 5000]}],
        },
        message="512x512",
    ),
    Case(
        "bbox wholly beyond the image",
        3,
        "speakers[1].bbox",
        _two_speakers([100, 50, 300, 250], [520, 300, 540, 400]),
        message="512x512",
    ),
    Case("output not mp4", 3, "output.uri", lambda c: {"output": {"uri": "out/bad.mov"}}),
    Case("unknown field", 3, "colour", lambda c: {"colour": "red"}),
    Case("missing local file", 5, "speakers[0].audio", lambda c: {"speakers": [{"audio": str(c.tmp / "nope.wav")}]}),
    Case(
        "overwrite refused",
        5,
        "output.uri",
        lambda c: {"output": {"uri": c.file("exists.mp4", b"precious")}},
        message="overwrite",
    ),
    Case(
        "missing s3 key",
        5,
        "speakers[0].audio",
        lambda c: {"speakers": [{"audio": c.s3_uri("inputs/missing.wav")}]},
        env="writer",
        s3_out=True,
    ),
    Case(
        "s3 access denied",
        5,
        "speakers[0].audio",
        lambda c: {"speakers": [{"audio": c.s3_uri("inputs/secret.wav", c.media.short.read_bytes())}]},
        env="denied",
        s3_out=True,
        message="denied",
    ),
    Case(
        "s3 output exists",
        5,
        "output.uri",
        lambda c: {"output": {"uri": c.s3_uri("outputs/taken.mp4", b"precious")}},
        env="writer",
    ),
    Case(
        "s3 output bucket missing",
        5,
        "output.uri",
        lambda c: {"output": {"uri": "s3://no-such-bucket/x.mp4"}},
        env="writer",
    ),
    Case(
        "s3 output bucket missing, overwrite on",
        5,
        "output.uri",
        lambda c: {"output": {"uri": "s3://no-such-bucket/x.mp4", "overwrite": True}},
        env="writer",
    ),
    Case(
        "unreachable endpoint",
        1,
        "output.uri",
        lambda c: {"storage": {"endpoint": f"http://127.0.0.1:{closed_port()}"}},
        env="writer",
        s3_out=True,
        message="unreachable",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, media: Media, tmp_path: Path, s3: S3Server) -> None:
    ctx = Ctx(media, tmp_path, s3)
    out_key = f"bad/{case.name.replace(' ', '-')}.mp4"
    request: dict[str, object] = {
        "engine": "placeholder",
        "speakers": [{"audio": str(media.short)}],
        "video": {"width": 64, "height": 64},
        "output": {"uri": f"s3://{s3.bucket}/{out_key}" if case.s3_out else "out/bad.mp4"},
        "storage": {"endpoint": s3.endpoint, "region": "us-east-1"},
    }
    for key, value in case.build(ctx).items():
        if isinstance(value, dict) and isinstance(request.get(key), dict):
            request[key] = {**request[key], **value}  # type: ignore[dict-item]
        else:
            request[key] = value
    before = sorted(s3.keys())
    env = {"writer": s3.writer, "denied": s3.reader_denied}.get(case.env, {})
    (tmp_path / "request.json").write_text(json.dumps(request))
    run = run_cli(["render", "--request", "request.json"], tmp_path, env=env)

    assert run.code == case.code, (run.code, run.stderr)
    assert run.result is not None and run.result["ok"] is False and run.result["exitCode"] == case.code
    assert run.error["field"] == case.field, run.error
    assert case.message.lower() in run.error["message"].lower(), run.error
    assert f"{case.field}: " in run.stderr  # the person at the terminal sees the field too
    assert "Traceback" not in run.stderr or case.code == 1
    # Nothing new at (or next to) the output key, no temp files left behind.
    assert sorted(s3.keys()) == before
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []
    if case.name == "overwrite refused":
        assert (tmp_path / "exists.mp4").read_bytes() == b"precious"
