"""End to end on the real API server: chart-installed operator, Job, runner pod on the test node, S3."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import av
import pytest
from cluster import images
from cluster.s3server import S3Server
from cluster.session import Cluster
from cluster.talkingvideos import apply, get_tv, jobs_of, talking_video
from cluster.testnode import TestNode
from cluster.waiting import eventually
from kubernetes import client

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def test_chart_installs_and_every_example_applies(cluster: Cluster, operator: dict[str, Any], namespace: str) -> None:
    assert operator.get("info", operator).get("status") == "deployed", list(operator)
    examples = sorted((REPO / "examples").glob("talkingvideo-*.yaml"))
    assert examples
    # Some examples name their team's namespace; a server-side dry run needs it to exist.
    cluster.kubectl("create", "namespace", "team-a", check=False)
    for example in examples:
        done = cluster.kubectl("apply", "--dry-run=server", "--server-side", "-f", str(example))
        assert "serverside-applied" in done.stdout, example.name


def test_render_end_to_end_then_garbage_collected(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server
) -> None:
    ns = render_namespace
    apply(cluster, ns, talking_video("hello", ns))
    cluster.kubectl("wait", "-n", ns, "--for=condition=Complete", "tv/hello", "--timeout=180s", timeout=200)

    status = get_tv(cluster, ns, "hello")["status"]
    assert status["phase"] == "Succeeded"
    assert status["engine"]["name"] == "placeholder"
    assert status["timings"]["totalSeconds"] > 0
    assert status["pod"]["nodeName"] == gpu_node.name
    # What users deploy is what ran: the chart's operator image and the runner image it names.
    if gpu_node.runtime != "process":
        started = dict(gpu_node.started)
        assert [image for pod, image in started.items() if pod.startswith(f"{ns}/")] == [images.RUNNER_IMAGE]
        assert images.OPERATOR_IMAGE in [image for pod, image in started.items() if "/multitalk-" in pod]
    output = status["output"]
    assert output["uri"] == f"s3://{ns}/out/hello.mp4"

    video = s3.client().get_object(Bucket=ns, Key="out/hello.mp4")["Body"].read()
    assert hashlib.sha256(video).hexdigest() == output["sha256"]
    with av.open(io.BytesIO(video)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == output["frames"]

    table = cluster.kubectl("get", "tv", "-n", ns).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "PHASE", "ENGINE", "PROGRESS"] and "DURATION" in header
    assert row.split()[:3] == ["hello", "Succeeded", "placeholder"]

    jobs = jobs_of(cluster, ns)
    assert len(jobs) == 1 and jobs[0].metadata.owner_references[0].kind == "TalkingVideo"
    cluster.kubectl("delete", "-n", ns, "tv/hello", "--wait=true", "--timeout=60s")
    core = client.CoreV1Api(cluster.api)
    eventually(lambda: not jobs_of(cluster, ns), 60, "the garbage collector to delete the Job")
    eventually(lambda: not core.list_namespaced_pod(ns).items, 60, "the garbage collector to delete the pod")


def test_a_dub_end_to_end(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server, tmp_path: Path
) -> None:
    """sourceVideo instead of image: the runner pod reads the video from S3 and lite dubs it."""
    from multitalk.runner.pipeline import Pipeline
    from multitalk.runner.request import RenderRequest

    ns = render_namespace
    talk = tmp_path / "talk.mp4"
    made = RenderRequest.model_validate(
        {
            "engine": "lite",
            "image": str(REPO / "examples" / "media" / "portrait.jpg"),
            "speakers": [{"audio": str(REPO / "examples" / "media" / "hello.wav")}],
            "video": {"width": 320, "height": 320, "fps": 25, "durationSeconds": 2.0},
            "output": {"uri": str(talk)},
        }
    )
    Pipeline(made, tmp_path / "no-model-cache").run()
    s3.client().put_object(Bucket=ns, Key="in/talk.mp4", Body=talk.read_bytes())
    tv = talking_video("dub", ns, engine="lite", video={"width": 320, "height": 320, "fps": 25})
    del tv["spec"]["image"]
    tv["spec"]["sourceVideo"] = f"s3://{ns}/in/talk.mp4"
    apply(cluster, ns, tv)
    cluster.kubectl("wait", "-n", ns, "--for=condition=Complete", "tv/dub", "--timeout=300s", timeout=320)
    status = get_tv(cluster, ns, "dub")["status"]
    assert status["phase"] == "Succeeded" and status["engine"]["name"] == "lite", status
    video = s3.client().get_object(Bucket=ns, Key="out/dub.mp4")["Body"].read()
    with av.open(io.BytesIO(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    # As long as the speech (hello.wav, 4.6 s), not the 2 s source: its last frame is held.
    assert frames == status["output"]["frames"] > 2 * 25 * 2
