"""Renders from and to S3 through a real S3-protocol server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runner_support import Media, S3Server, probe_mp4, run_cli


def _request(s3: S3Server, key: str, **extra: object) -> dict[str, object]:
    return {
        "engine": "placeholder",
        "image": f"s3://{s3.bucket}/inputs/face.jpg",
        "speakers": [{"audio": f"s3://{s3.bucket}/inputs/voice.wav"}],
        "video": {"width": 96, "height": 96, "fps": 25},
        "output": {"uri": f"s3://{s3.bucket}/{key}"},
        "storage": {"endpoint": s3.endpoint, "region": "us-east-1"},
        **extra,
    }


def _upload_inputs(s3: S3Server, media: Media) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="inputs/voice.wav", Body=media.short.read_bytes())
    client.put_object(Bucket=s3.bucket, Key="inputs/face.jpg", Body=media.portrait.read_bytes())


def test_s3_in_s3_out(s3: S3Server, media: Media, tmp_path: Path) -> None:
    _upload_inputs(s3, media)
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(_request(s3, "outputs/ok.mp4")))
    run = run_cli(["render", "--request", str(request_file)], tmp_path, env=s3.writer)
    assert run.code == 0, run.stderr
    assert s3.keys("outputs/ok") == ["outputs/ok.json", "outputs/ok.mp4", "outputs/ok.png"]

    client = s3.client()
    body = client.get_object(Bucket=s3.bucket, Key="outputs/ok.mp4")["Body"].read()
    assert run.result is not None
    out = run.result["output"]
    assert out["uri"] == f"s3://{s3.bucket}/outputs/ok.mp4"
    assert out["posterUri"] == f"s3://{s3.bucket}/outputs/ok.png"
    assert out["sizeBytes"] == len(body) and out["sha256"] == hashlib.sha256(body).hexdigest()
    local = tmp_path / "downloaded.mp4"
    local.write_bytes(body)
    p = probe_mp4(local)
    assert (p.video_codec, p.audio_codec, p.pix_fmt, p.width, p.height) == ("h264", "aac", "yuv420p", 96, 96)
    assert p.frames == out["frames"] == round(1.2 * 25)
    head = client.head_object(Bucket=s3.bucket, Key="outputs/ok.mp4")
    assert head["ContentType"] == "video/mp4"
    assert "-" in head["ETag"]  # completed through a multipart upload
    manifest = json.loads(client.get_object(Bucket=s3.bucket, Key="outputs/ok.json")["Body"].read())
    assert manifest["output"]["sha256"] == out["sha256"]
    assert "AWS" not in json.dumps(manifest) and s3.writer["AWS_SECRET_ACCESS_KEY"] not in json.dumps(manifest)
    assert run.result["timings"]["uploadSeconds"] >= 0 and run.result["timings"]["downloadSeconds"] >= 0


def test_s3_overwrite_true_replaces(s3: S3Server, media: Media, tmp_path: Path) -> None:
    _upload_inputs(s3, media)
    s3.client().put_object(Bucket=s3.bucket, Key="outputs/replace.mp4", Body=b"old")
    request = _request(s3, "outputs/replace.mp4")
    request["output"] = {"uri": f"s3://{s3.bucket}/outputs/replace.mp4", "overwrite": True}
    run = run_cli(["render"], tmp_path, env={**s3.writer, "MULTITALK_REQUEST": json.dumps(request)})
    assert run.code == 0, run.stderr
    body = s3.client().get_object(Bucket=s3.bucket, Key="outputs/replace.mp4")["Body"].read()
    assert body != b"old" and body[4:8] == b"ftyp"


def test_s3_dub_of_a_source_video(s3: S3Server, media: Media, tmp_path: Path) -> None:
    """A lite render of the example, uploaded, dubbed from S3 to S3 with the example's speech."""
    source = tmp_path / "talk.mp4"
    made = run_cli(
        ["render", "--engine", "lite", "--audio", str(media.short), "--image", str(media.portrait),
         "--width", "320", "--height", "320", "--out", str(source)],
        tmp_path,
    )  # fmt: skip
    assert made.code == 0, made.stderr
    _upload_inputs(s3, media)
    s3.client().put_object(Bucket=s3.bucket, Key="inputs/talk.mp4", Body=source.read_bytes())
    request = _request(s3, "outputs/dub.mp4", engine="lite", video={"width": 320, "height": 320, "fps": 25})
    request.pop("image")
    request["sourceVideo"] = f"s3://{s3.bucket}/inputs/talk.mp4"
    request_file = tmp_path / "dub.json"
    request_file.write_text(json.dumps(request))
    run = run_cli(["render", "--request", str(request_file)], tmp_path, env=s3.writer)
    assert run.code == 0, run.stderr
    assert run.result is not None and run.result["engine"]["name"] == "lite"
    assert s3.keys("outputs/dub") == ["outputs/dub.json", "outputs/dub.mp4", "outputs/dub.png"]
    assert run.result["output"]["frames"] == round(1.2 * 25)


def test_s3_source_video_without_a_video_stream_is_exit_3(s3: S3Server, media: Media, tmp_path: Path) -> None:
    _upload_inputs(s3, media)
    request = _request(s3, "outputs/nodub.mp4")
    request.pop("image")
    request["sourceVideo"] = f"s3://{s3.bucket}/inputs/voice.wav"
    request_file = tmp_path / "nodub.json"
    request_file.write_text(json.dumps(request))
    run = run_cli(["render", "--request", str(request_file)], tmp_path, env=s3.writer)
    assert run.code == 3, run.stderr
    assert run.result is not None and run.result["error"]["field"] == "sourceVideo"
    assert s3.keys("outputs/nodub") == []  # nothing at the output key


def test_a_retry_after_its_own_publish_reports_that_render(s3: S3Server, media: Media, tmp_path: Path) -> None:
    """A pod preempted between publishing and exiting: its retry finds this request's complete
    render at the output and reports it (exit 0, nothing rendered again); another request there
    is still refused."""
    _upload_inputs(s3, media)
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(_request(s3, "outputs/once.mp4")))
    first = run_cli(["render", "--request", str(request_file)], tmp_path, env=s3.writer)
    assert first.code == 0, first.stderr
    client = s3.client()
    modified = client.head_object(Bucket=s3.bucket, Key="outputs/once.mp4")["LastModified"]

    again = run_cli(["render", "--request", str(request_file)], tmp_path, env=s3.writer)
    assert again.code == 0, again.stderr
    assert again.result is not None and first.result is not None
    assert again.result["output"] == first.result["output"]
    assert again.result["engine"]["name"] == "placeholder"
    assert "already holds this request's render" in again.stderr
    assert client.head_object(Bucket=s3.bucket, Key="outputs/once.mp4")["LastModified"] == modified

    other = tmp_path / "other.json"
    other.write_text(json.dumps(_request(s3, "outputs/once.mp4", sampling={"seed": 7})))
    refused = run_cli(["render", "--request", str(other)], tmp_path, env=s3.writer)
    assert refused.code == 5 and refused.result is not None
    assert refused.result["error"]["field"] == "output.uri"
