"""The test node's `podman run` line for a pod (pure): what a kubelet with a CRI runtime
would give the container, from the Job the operator builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from cluster.testnode.container import Mount, podman_run_args, refusal

from multitalk.operator import api, job_builder
from multitalk.operator.settings import OperatorSettings

FIXTURE = Path(__file__).resolve().parents[1] / "operator" / "fixtures" / "talkingvideo.yaml"


def runner_pod() -> dict[str, Any]:
    tv = yaml.safe_load(FIXTURE.read_text())
    template = job_builder.build_job(tv, api.parse_spec(tv["spec"]), OperatorSettings())["spec"]["template"]
    return {"metadata": {"name": "hello-abc12", "namespace": "team-a", "uid": "u-1"}, "spec": template["spec"]}


def test_the_runner_pod_runs_as_its_uid_with_a_read_only_root_and_its_mounts() -> None:
    pod = runner_pod()
    container = pod["spec"]["containers"][0]
    mounts = {"/tmp": Mount(Path("/node/pod/scratch")), "/dev/termination-log": Mount(Path("/node/pod/log"))}
    args = podman_run_args(
        pod,
        container,
        image="multitalk-runner:0.1.0",
        name="c1",
        mounts=mounts,
        env_names=["MULTITALK_REQUEST"],
        env_values={},
    )
    joined = " ".join(args)
    uid = OperatorSettings().runner_run_as_user
    assert f"--user {uid}:{uid}" in joined and f"--group-add {uid}" in joined
    assert "--read-only --read-only-tmpfs=false" in joined
    assert "--cap-drop=all" in args and "--security-opt no-new-privileges" in joined
    assert "--pull never" in joined and "--network host" in joined
    assert "--volume /node/pod/scratch:/tmp" in joined and "--volume /node/pod/log:/dev/termination-log" in joined
    assert "--env MULTITALK_REQUEST" in joined  # by name: the value stays off the command line
    # command replaces the image's entrypoint and CMD; no args follow the image
    index = args.index("--entrypoint")
    assert json.loads(args[index + 1]) == container["command"]
    assert args[-1] == "multitalk-runner:0.1.0"


def test_args_follow_the_image_and_read_only_mounts_stay_read_only() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "args": ["check", "--require", "lite"]}]}}
    container = pod["spec"]["containers"][0]
    args = podman_run_args(
        pod,
        container,
        image="img",
        name="c",
        mounts={"/models": Mount(Path("/m"), read_only=True)},
        env_names=[],
        env_values={"A": "1"},
    )
    assert "--entrypoint" not in args and "--user" not in args  # the image's own entrypoint and USER
    assert args[-4:] == ["img", "check", "--require", "lite"]
    assert "/m:/models:ro" in args and "A=1" in args


def test_run_as_non_root_is_checked_against_the_image_user_as_a_kubelet_does() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [{"name": "c"}]},
    }
    container = pod["spec"]["containers"][0]
    assert refusal(pod, container, "65532:65532") is None
    assert "non-numeric user (root)" in (refusal(pod, container, "") or "")
    assert "non-numeric user (app)" in (refusal(pod, container, "app") or "")
    assert refusal(pod, container, "0") == "container has runAsNonRoot and image will run as root"
    container["securityContext"] = {"runAsUser": 1000}
    assert refusal(pod, container, "") is None
    assert refusal({"metadata": {}, "spec": {"containers": [{}]}}, {}, "") is None  # runAsNonRoot unset
