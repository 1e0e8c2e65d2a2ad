"""Shared helpers and fixtures for the runner tests: media files, the CLI as a subprocess, an S3 server.

The S3 server is moto's real HTTP server on 127.0.0.1 (random port) with IAM
authorisation switched on, so credentials and policies behave as on a real endpoint; the
runner reaches it through boto3 exactly as in production (endpoint from the request,
credentials from AWS_* variables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

REPO = Path(__file__).resolve().parents[2]
HELLO_WAV = REPO / "examples" / "media" / "hello.wav"
PORTRAIT = REPO / "examples" / "media" / "portrait.jpg"
RUNNER = [sys.executable, "-m", "multitalk.runner.cli"]


def read_wav_mono(path: Path, seconds: float | None = None) -> tuple[npt.NDArray[np.float32], int]:
    """Samples of a speech file (mono float32) and its rate."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        res = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = [f.to_ndarray().reshape(-1) for fr in c.decode(stream) for f in res.resample(fr)]
    samples = np.concatenate(parts).astype(np.float32)
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    return samples, rate


def write_audio(
    path: Path, samples: npt.NDArray[np.float32], rate: int, codec: str = "pcm_s16le", channels: int = 1
) -> Path:
    """Encode mono samples with PyAV into any container/codec (channels duplicated if > 1)."""
    layout = {1: "mono", 2: "stereo"}[channels]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate, layout=layout)
        fmt = s.codec_context.codec.audio_formats[0].name if s.codec_context.codec.audio_formats else "s16"
        frame_size = s.codec_context.frame_size or 1024
        data = np.repeat(samples[None, :], channels, axis=0)
        pos = 0
        while pos < data.shape[1]:
            chunk = np.ascontiguousarray(data[:, pos : pos + frame_size])
            f = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            f.sample_rate = rate
            f.pts = pos
            f.time_base = Fraction(1, rate)
            if fmt != "fltp":
                f = av.AudioResampler(format=fmt, layout=layout, rate=rate).resample(f)[0]
                f.pts = pos
            c.mux(s.encode(f))
            pos += chunk.shape[1]
        c.mux(s.encode(None))
    return path


@dataclass(frozen=True)
class Media:
    hello: Path  # the committed example, 22.05 kHz mono 16-bit
    short: Path  # its first 1.2 s
    portrait: Path
    dir: Path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("media")
    samples, rate = read_wav_mono(HELLO_WAV, seconds=1.2)
    return Media(hello=HELLO_WAV, short=write_audio(d / "short.wav", samples, rate), portrait=PORTRAIT, dir=d)


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None

    @property
    def error(self) -> dict[str, Any]:
        assert self.result is not None and "error" in self.result, self.stderr
        err: dict[str, Any] = self.result["error"]
        return err


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A child environment with no stray AWS or runner configuration from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MULTITALK_"))}
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "MULTITALK_MODEL_DIR": str(REPO / "build" / "no-models"),
        }
    )
    env.update(extra or {})
    return env


def run_cli(args: list[str], tmp: Path, env: dict[str, str] | None = None, timeout: float = 120) -> CliRun:
    """Run `multitalk-runner` as a subprocess, with the result JSON written into tmp."""
    result_path = tmp / "result.json"
    result_path.unlink(missing_ok=True)
    cmd = [*RUNNER, *args]
    if args and args[0] == "render" and "--result" not in args:
        cmd += ["--result", str(result_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(env), timeout=timeout, cwd=tmp)
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    return CliRun(proc.returncode, proc.stdout, proc.stderr, result)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    writer: dict[str, str]  # AWS_* env of a user allowed everything on the bucket
    reader_denied: dict[str, str]  # AWS_* env of a user denied s3:GetObject on inputs/*

    def client(self, creds: dict[str, str] | None = None) -> Any:
        import boto3

        c = creds or self.writer
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=c["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=c["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))


def _user(iam: Any, name: str, policy: dict[str, Any]) -> dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    import boto3
    from moto.core import disable_iam_authentication, enable_iam_authentication
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = "renders"
    try:
        with enable_iam_authentication():
            with disable_iam_authentication():  # bootstrap users and the bucket
                boot = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
                iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **boot)
                s3c = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **boot)
                s3c.create_bucket(Bucket=bucket)
                writer = _user(
                    iam,
                    "writer",
                    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
                )
                denied = _user(
                    iam,
                    "denied",
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/inputs/*"},
                        ],
                    },
                )
            yield S3Server(endpoint=endpoint, bucket=bucket, writer=writer, reader_denied=denied)
    finally:
        server.stop()


@dataclass(frozen=True)
class Probe:
    video_codec: str
    audio_codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int  # decoded, not the header's claim
    video_seconds: float
    audio_seconds: float  # the track's duration (edit list applied)
    audio_decoded_seconds: float  # samples decoded (AAC pads the last 1024-sample frame)
    audio_rate: int
    faststart: bool
    colour: tuple[str, str]  # (matrix, range) as tagged in the stream


def probe_mp4(path: Path) -> Probe:
    """Decode the whole file again and measure both tracks."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        frames = sum(1 for _ in c.decode(v))
        c.seek(0)
        audio_samples = sum(f.samples for f in c.decode(a))
        probe = Probe(
            video_codec=v.codec_context.name,
            audio_codec=a.codec_context.name,
            pix_fmt=v.codec_context.pix_fmt or "",
            width=v.codec_context.width,
            height=v.codec_context.height,
            fps=float(v.average_rate or 0),
            frames=frames,
            video_seconds=float(v.duration * v.time_base) if v.duration else 0.0,
            audio_seconds=float(a.duration * a.time_base) if a.duration else 0.0,
            audio_decoded_seconds=audio_samples / a.rate,
            audio_rate=a.rate,
            faststart=_moov_before_mdat(path),
            colour=(
                {1: "bt709", 5: "bt601", 6: "bt601"}.get(int(v.codec_context.colorspace), "unspecified"),
                {1: "tv", 2: "pc"}.get(int(v.codec_context.color_range), "unspecified"),
            ),
        )
    return probe


def _moov_before_mdat(path: Path) -> bool:
    """faststart: the index box (moov) precedes the media data box (mdat)."""
    data = path.read_bytes()
    pos, order = 0, []
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        order.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return "moov" in order and "mdat" in order and order.index("moov") < order.index("mdat")
