"""The runner image as a render pod runs it: uid 65532, read-only root, only /tmp (and the
output folder) writable, no network, so nothing can be fetched at run time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import pytest
from cluster import images
from cluster.images import writable

from multitalk.runner.engines.registry import ENGINES

pytestmark = [pytest.mark.images, pytest.mark.slow]

MEDIA = images.REPO / "examples" / "media"


def _locked(name: str) -> str:
    lock = (images.REPO / "requirements" / "runner.txt").read_text()
    found = re.search(rf"^{re.escape(name)}==(\S+)$", lock, re.M)
    assert found, f"{name} is not in requirements/runner.txt"
    return found[1]


def test_check_lists_the_engines_with_torch_and_cuda_libraries_and_no_device(runner_image: str, tmp_path: Path) -> None:
    result = images.run(runner_image, "check", volumes={str(writable(tmp_path / "tmp")): "/tmp"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    engines = report["engines"]
    assert list(engines) == list(ENGINES)
    assert engines["lite"]["available"] and engines["placeholder"]["available"], engines
    assert not engines["multitalk"]["available"] and "no CUDA device" in engines["multitalk"]["reason"]
    gpu = report["gpu"]
    assert gpu["torch"] is True and gpu["cuda"] is False and gpu["reason"] == "torch sees no CUDA device"
    # The CUDA libraries of the nvidia-* wheels are in the image and load without a driver.
    assert all(gpu["cudaLibraries"].values()), gpu["cudaLibraries"]
    runtime = _locked("nvidia-cuda-runtime").split(".")
    assert gpu["cudaBuild"] == f"{runtime[0]}.{runtime[1]}"
    assert report["versions"]["torch"] == _locked("torch")
    assert report["versions"]["python"].startswith("3.11.")  # the lock's Python


def test_only_tmp_is_writable_and_the_user_is_65532(runner_image: str, tmp_path: Path) -> None:
    probe = (
        "import os\n"
        "for path in ('/tmp/probe', '/opt/venv/probe', '/probe', '/etc/probe'):\n"
        "    try:\n"
        "        open(path, 'w').close(); print(path, 'writable')\n"
        "    except OSError as error:\n"
        "        print(path, error.strerror)\n"
        "print('uid', os.getuid(), os.getgid())\n"
    )
    result = images.run(
        runner_image, "-c", probe, entrypoint=["python3"], volumes={str(writable(tmp_path / "tmp")): "/tmp"}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "/tmp/probe writable"
    assert all(line.endswith("Read-only file system") for line in lines[1:4]), lines
    assert lines[4] == "uid 65532 65532"


def test_image_user_and_offline_settings(runner_image: str) -> None:
    config = images.inspect(runner_image)["Config"]
    assert config["User"] == "65532:65532"
    env = dict(item.split("=", 1) for item in config["Env"])
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        assert env[key] == "1"
    assert env["HOME"] == "/tmp" and env["MULTITALK_MODEL_DIR"] == "/models"
    assert env["NVIDIA_REQUIRE_CUDA"] == f"cuda>={_locked('nvidia-cuda-runtime').split('.')[0]}.0"


@pytest.mark.parametrize("engine", ["lite", "placeholder"])
def test_example_renders_to_a_valid_mp4_without_network(runner_image: str, tmp_path: Path, engine: str) -> None:
    out = writable(tmp_path / "out")
    result = images.run(
        runner_image,
        "render",
        "--audio",
        "/in/hello.wav",
        "--image",
        "/in/portrait.jpg",
        "--out",
        "/out/hello.mp4",
        "--engine",
        engine,
        "--result",
        "/out/result.json",
        "--no-progress",
        volumes={str(MEDIA): "/in:ro", str(writable(tmp_path / "tmp")): "/tmp", str(out): "/out"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads((out / "result.json").read_text())
    assert report["ok"] is True and report["engine"]["name"] == engine
    with av.open(str(MEDIA / "hello.wav")) as speech:
        seconds = float(speech.duration or 0) / av.time_base
    with av.open(str(out / "hello.mp4")) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and video.streams.audio
        frames = sum(1 for _ in video.decode(video=0))
        assert frames == report["output"]["frames"] > 0
        assert abs(frames / float(stream.average_rate or 25) - seconds) < 0.5


def test_the_image_dubs_a_video_with_lite(runner_image: str, tmp_path: Path) -> None:
    """Its own render of the example, dubbed to the same speech: sourceVideo through the image's PyAV."""
    out = writable(tmp_path / "out")
    volumes = {str(MEDIA): "/in:ro", str(writable(tmp_path / "tmp")): "/tmp", str(out): "/out"}
    common = ("--audio", "/in/hello.wav", "--engine", "lite", "--width", "320", "--height", "320", "--no-progress")
    made = images.run(
        runner_image, "render", *common, "--image", "/in/portrait.jpg", "--out", "/out/talk.mp4",
        volumes=volumes, timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-4000:]
    result = images.run(
        runner_image, "render", *common, "--source-video", "/out/talk.mp4", "--out", "/out/dub.mp4",
        "--result", "/out/dub.json", volumes=volumes, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads((out / "dub.json").read_text())
    assert report["engine"]["name"] == "lite"
    with av.open(str(out / "dub.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == report["output"]["frames"] > 0
