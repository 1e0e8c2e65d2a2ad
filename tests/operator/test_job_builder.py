"""build_job: the manifest the operator creates for a TalkingVideo."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from multitalk.operator import api, job_builder
from multitalk.operator.settings import OperatorSettings
from multitalk.runner.request import RenderRequest

FIXTURES = Path(__file__).parent / "fixtures"


def tv() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / "talkingvideo.yaml").read_text())
    return data


def build(obj: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    obj = obj or tv()
    return job_builder.build_job(obj, api.parse_spec(obj["spec"]), OperatorSettings(**settings))


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def test_name_is_deterministic_short_and_unique_per_uid() -> None:
    assert job_builder.job_name("hello", "u1") == job_builder.job_name("hello", "u1")
    assert job_builder.job_name("hello", "u1") != job_builder.job_name("hello", "u2")
    long = job_builder.job_name("x" * 253, "u1")
    assert len(long) <= 63 and long.startswith("x")
    assert build()["metadata"]["name"] == job_builder.job_name("hello", tv()["metadata"]["uid"])


def test_request_env_is_the_runner_request_without_secrets() -> None:
    job = build()
    request = RenderRequest.model_validate_json(env(job)["MULTITALK_REQUEST"])
    assert request.engine == "multitalk"
    assert request.output.uri == "s3://media-out/hello.mp4"
    assert request.storage.endpoint == "http://minio.minio:9000"
    assert "secretRef" not in env(job)["MULTITALK_REQUEST"]
    assert env(job)["MULTITALK_RESULT_PATH"] == "/dev/termination-log"


def test_s3_credentials_by_secret_key_ref_only() -> None:
    e = env(build())
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert e[key] == {"secretKeyRef": {"name": "s3-creds", "key": key}}
    fallback = tv()
    del fallback["spec"]["storage"]["secretRef"]
    e2 = env(build(fallback, storage_secret_name="cluster-s3"))
    assert e2["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "cluster-s3"
    none = tv()
    del none["spec"]["storage"]["secretRef"]
    assert "AWS_ACCESS_KEY_ID" not in env(build(none))  # e.g. IRSA / workload identity


def test_kueue_queue_label_and_created_suspended() -> None:
    job = build()
    assert job["metadata"]["labels"][job_builder.KUEUE_QUEUE_LABEL] == "gpu"
    assert job["spec"]["suspend"] is True
    no_queue = tv()
    no_queue["spec"]["scheduling"] = {}
    plain = build(no_queue)
    assert job_builder.KUEUE_QUEUE_LABEL not in plain["metadata"]["labels"]
    assert plain["spec"]["suspend"] is False
    assert (
        build(no_queue, queue_name="default-gpu")["metadata"]["labels"][job_builder.KUEUE_QUEUE_LABEL] == "default-gpu"
    )


def test_job_policies() -> None:
    spec = build()["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 86400
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [3, 4, 5]},
    }
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def test_pod_security_restricted_and_no_token() -> None:
    pod = build()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(build())["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container(build())["volumeMounts"]}
    assert "/tmp" in mounts
    assert container(build())["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_gpu_resources_default_from_settings_and_toleration() -> None:
    job = build()
    assert container(job)["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in job["spec"]["template"]["spec"][
        "tolerations"
    ]
    cpu = tv()
    cpu["spec"]["runner"] = {"resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}
    cpu_job = build(cpu)
    assert container(cpu_job)["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert "tolerations" not in cpu_job["spec"]["template"]["spec"]


def test_gpus_give_the_limit_shm_and_rank_environment() -> None:
    obj = tv()
    obj["spec"]["runner"] = {
        "gpus": 4,
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "200Gi"}, "requests": {"nvidia.com/gpu": 1}},
    }
    job = build(obj)
    resources = container(job)["resources"]
    assert resources["limits"] == {"nvidia.com/gpu": "4", "memory": "200Gi"}
    assert resources["requests"] == {"nvidia.com/gpu": "4"}
    pod = job["spec"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container(job)["volumeMounts"]
    variables = env(job)
    assert (variables["WORLD_SIZE"], variables["MASTER_ADDR"], variables["MASTER_PORT"]) == ("4", "127.0.0.1", "29500")
    assert "RANK" not in variables  # the runner is rank 0 and starts the others itself
    # One GPU (explicitly or by default): no shm volume, no rank environment; the default limit still set.
    one = tv()
    one["spec"]["runner"] = {"gpus": 1}
    single = build(one)
    assert container(single)["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert "WORLD_SIZE" not in env(single) and "WORLD_SIZE" not in env(build())
    assert all(v["name"] != "dshm" for v in single["spec"]["template"]["spec"]["volumes"])


def test_gpus_out_of_range_and_rank_env_reserved() -> None:
    import pytest

    for bad in (0, 9):
        obj = tv()
        obj["spec"]["runner"] = {"gpus": bad}
        with pytest.raises(api.InvalidSpecError, match=r"spec\.runner\.gpus"):
            api.parse_spec(obj["spec"])
    obj = tv()
    obj["spec"]["runner"] = {"env": [{"name": "WORLD_SIZE", "value": "2"}]}
    with pytest.raises(api.InvalidSpecError, match="set by the operator"):
        api.parse_spec(obj["spec"])


def test_model_cache_read_only() -> None:
    obj = tv()
    obj["spec"]["modelCache"] = {"claimName": "models", "mountPath": "/models"}
    job = build(obj)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    mount = next(m for m in container(job)["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert env(job)["MULTITALK_MODEL_DIR"] == "/models"
    from_settings = build(tv(), model_cache_claim="shared-models", model_cache_mount_path="/cache")
    assert any(v["name"] == "models" for v in from_settings["spec"]["template"]["spec"]["volumes"])


def test_scheduling_fields_pass_through() -> None:
    obj = tv()
    obj["spec"]["scheduling"] = {
        "queueName": "gpu",
        "priorityClassName": "batch-low",
        "nodeSelector": {"pool": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "runtimeClassName": "nvidia",
    }
    pod = build(obj)["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeAffinity" in pod["affinity"]
    assert pod["runtimeClassName"] == "nvidia"


def test_label_allow_list() -> None:
    job = build(tv(), copy_label_keys=["argocd.argoproj.io/instance", "app.kubernetes.io/instance"])
    labels = job["metadata"]["labels"]
    assert labels["team"] == "avatars"
    assert "app.kubernetes.io/instance" not in labels
    assert not any(k.startswith("argocd.argoproj.io/") for k in labels)
    assert labels == job["spec"]["template"]["metadata"]["labels"] | {job_builder.KUEUE_QUEUE_LABEL: "gpu"}


def test_user_env_is_appended_and_image_override() -> None:
    obj = tv()
    obj["spec"]["runner"] = {
        "image": "registry.example/runner:2",
        "env": [{"name": "MULTITALK_LOG_LEVEL", "value": "debug"}],
    }
    job = build(obj)
    assert container(job)["image"] == "registry.example/runner:2"
    assert env(job)["MULTITALK_LOG_LEVEL"] == "debug"


def test_manifest_is_pure_and_json_serialisable() -> None:
    first, second = build(), build()
    assert first == second
    json.dumps(first)
    obj = tv()
    before = copy.deepcopy(obj)
    build(obj)
    assert obj == before
