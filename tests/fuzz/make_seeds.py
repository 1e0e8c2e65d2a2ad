"""Write the fuzzers' seed corpora (tests/fuzz/seeds/) from the committed example media.

    python tests/fuzz/make_seeds.py

Seeds are real files in each format the runner reads, kept small (a few KB) so that
libFuzzer's mutations stay cheap and reach every part of the file: the example portrait
scaled down and saved as each jpeg/png/webp variant, a slice of the example speech
encoded with each common codec, and render requests as a user or the operator writes
them. The files are committed; this script says where they came from and remakes them
when a new format or field needs a seed (Ogg streams get a random serial number, so those
two differ byte-wise on every run).
"""

from __future__ import annotations

import base64
import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SEEDS = HERE / "seeds"
PORTRAIT = REPO / "examples" / "media" / "portrait.jpg"
SPEECH = REPO / "examples" / "media" / "hello.wav"
SPEECH_AT = (0.4, 0.6)  # seconds of hello.wav with voiced speech in it


def image_seeds() -> dict[str, bytes]:
    face = Image.open(PORTRAIT).convert("RGB").resize((48, 48), Image.Resampling.LANCZOS)
    wide = face.resize((64, 40))

    def save(img: Image.Image, fmt: str, **options: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        return buf.getvalue()

    rotated = Image.Exif()
    rotated[0x0112] = 6  # EXIF orientation: rotate 90° clockwise to view
    return {
        "baseline.jpg": save(face, "JPEG", quality=70),
        "progressive.jpg": save(face, "JPEG", quality=60, progressive=True),
        "exif-orientation-6.jpg": save(wide, "JPEG", quality=60, exif=rotated.tobytes()),
        "cmyk.jpg": save(face.convert("CMYK"), "JPEG", quality=60),
        "grey.jpg": save(face.convert("L"), "JPEG", quality=60),
        "rgba.png": save(face.convert("RGBA"), "PNG", optimize=True),
        "palette.png": save(face.quantize(16), "PNG", optimize=True),
        "grey16.png": save(face.convert("L").convert("I;16"), "PNG"),
        "interlaced.png": save(wide, "PNG", interlace=1),
        "lossy.webp": save(face, "WEBP", quality=50),
        "lossless.webp": save(face.quantize(8).convert("RGB"), "WEBP", lossless=True),
    }


def _speech(rate: int) -> npt.NDArray[np.float32]:
    with av.open(str(SPEECH)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in resampler.resample(fr)]
    samples = np.concatenate(parts).astype(np.float32)
    return samples[int(SPEECH_AT[0] * rate) : int(SPEECH_AT[1] * rate)]


def _encode(container: str, codec: str, rate: int, layout: str = "mono") -> bytes:
    samples = _speech(rate)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as c:
        stream = c.add_stream(codec, rate=rate, layout=layout)
        channels = 2 if layout == "stereo" else 1
        if codec in ("libmp3lame", "aac", "libopus", "vorbis"):
            stream.bit_rate = 32_000
        if codec == "vorbis":  # FFmpeg's own Vorbis encoder (no libvorbis in PyAV's wheel)
            stream.codec_context.options = {"strict": "experimental"}
        fmt = stream.codec_context.codec.audio_formats[0].name
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for pos in range(0, len(samples), frame_size):
            chunk = np.ascontiguousarray(np.repeat(samples[None, pos : pos + frame_size], channels, axis=0))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, pos, Fraction(1, rate)
            for out in resampler.resample(frame):
                c.mux(stream.encode(out))
        c.mux(stream.encode(None))
    return buf.getvalue()


def _without_id3(mp3: bytes) -> bytes:
    if mp3[:3] != b"ID3":
        return mp3
    size = (mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9]  # syncsafe
    return mp3[10 + size :]


def audio_seeds() -> dict[str, bytes]:
    mono, stereo = _encode("mp3", "libmp3lame", 8000), _encode("mp3", "libmp3lame", 8000, "stereo")
    return {
        "mp3-mono-then-stereo.mp3": mono + _without_id3(stereo),  # each MP3 frame has its own channel mode
        "pcm16-8k.wav": _encode("wav", "pcm_s16le", 8000),
        "pcm-u8-stereo-8k.wav": _encode("wav", "pcm_u8", 8000, "stereo"),
        "float-11k.wav": _encode("wav", "pcm_f32le", 11025),
        "flac-8k.flac": _encode("flac", "flac", 8000),
        "mp3-16k.mp3": _encode("mp3", "libmp3lame", 16000),
        "vorbis-stereo-16k.ogg": _encode("ogg", "vorbis", 16000, "stereo"),  # it encodes stereo only
        "opus-48k.opus": _encode("ogg", "libopus", 48000),
        "aac-16k.m4a": _encode("ipod", "aac", 16000),
        "aiff-8k.aiff": _encode("aiff", "pcm_s16be", 8000),
    }


def request_seeds(wav: bytes, png: bytes) -> dict[str, bytes]:
    def doc(data: object) -> bytes:
        return (json.dumps(data, indent=1) + "\n").encode()

    minimal = {"speakers": [{"audio": "hello.wav"}], "output": {"uri": "out/hello.mp4"}}
    full = {
        "engine": "multitalk",
        "allowFallback": True,
        "image": "s3://media-bucket/portraits/face.jpg",
        "speakers": [{"audio": "s3://media-bucket/speech/hello.wav", "transcript": "hello there"}],
        "audioMode": "sequential",
        "prompt": "A woman talks to the camera in a bright studio.",
        "video": {"width": 832, "height": 480, "fps": 25, "maxDurationSeconds": 120, "durationSeconds": 12.5},
        "sampling": {
            "steps": 8,
            "seed": 7,
            "textGuidance": 5.0,
            "audioGuidance": 4.0,
            "shift": 2.0,
            "teaCache": 0.3,
            "loras": [{"path": "loras/speed.safetensors", "scale": 1.0}],
        },
        "lite": {"expression": 1.2, "headMotion": 0.5, "blinksPerMinute": 12},
        "output": {"uri": "s3://media-bucket/renders/hello.mp4", "overwrite": True},
        "storage": {"endpoint": "http://minio.minio:9000", "region": "us-east-1"},
    }
    two = {
        "engine": "lite",
        "image": "https://example.org/two.jpg",
        "speakers": [
            {"audio": "file:///data/a.wav", "bbox": [40, 10, 200, 150]},
            {"audio": "file:///data/b.wav", "bbox": [40, 300, 210, 460]},
        ],
        "audioMode": "simultaneous",
        "output": {"uri": "file:///data/out/two.mp4"},
    }
    inline = {
        "engine": "placeholder",
        "image": "data:image/png;base64," + base64.b64encode(png).decode(),
        "speakers": [{"audio": "data:audio/wav;base64," + base64.b64encode(wav).decode(), "bbox": [4, 4, 40, 40]}],
        "video": {"width": 64, "height": 64},
        "output": {"uri": "out/inline.mp4"},
    }
    return {
        "minimal.json": doc(minimal),
        "full.json": doc(full),
        "two-speakers.json": doc(two),
        "inline.json": doc(inline),
    }


def _video(container: str, codec: str, size: tuple[int, int], times_ms: list[int], **options: str) -> bytes:
    """A few frames of the portrait panning, in the given container and codec, at the given times."""
    face = np.asarray(Image.open(PORTRAIT).convert("RGB").resize((size[0] + 8, size[1]), Image.Resampling.LANCZOS))
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = options
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(face[:, i : i + size[0]]), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


def _rotated(mp4: bytes) -> bytes:
    """The same MP4 with a phone's display matrix: turn 90 degrees clockwise to view."""
    at = mp4.find(b"tkhd") + 4 + 4 + 20 + 8 + 8
    matrix = np.array([0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30], dtype=">i4").tobytes()
    return mp4[:at] + matrix + mp4[at + 36 :]


def video_seeds() -> dict[str, bytes]:
    cfr = [i * 40 for i in range(6)]
    vfr = [0, 60, 80, 100, 200, 240]
    h264 = _video("mp4", "libx264", (32, 24), cfr, preset="ultrafast", crf="35")
    return {
        "h264.mp4": h264,
        "h264-vfr.mp4": _video("mp4", "libx264", (32, 24), vfr, preset="ultrafast", crf="35"),
        "h264-rotated.mp4": _rotated(h264),
        "mpeg4.mkv": _video("matroska", "mpeg4", (32, 24), cfr, qscale="20"),
        "vp8.webm": _video("webm", "libvpx", (32, 24), cfr, crf="40", b="50k"),
    }


def main() -> None:
    images, audio = image_seeds(), audio_seeds()
    corpora = {
        "image": images,
        "audio": audio,
        "video": video_seeds(),
        "request": request_seeds(audio["pcm16-8k.wav"][:1200], images["palette.png"]),
    }
    for target, files in corpora.items():
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        total = sum(len(d) for d in files.values())
        print(f"{folder.relative_to(REPO)}: {len(files)} files, {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
