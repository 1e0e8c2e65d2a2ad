"""`make demo-cluster`: the whole path on a real (loopback) Kubernetes control plane.

Starts etcd + kube-apiserver + kube-controller-manager, a local S3 server with the
example speech and portrait, installs the chart with the Helm library, runs the operator
pod and the runner pods on a test node (from the images `make images` built, or as local
processes with MULTITALK_TEST_NODE_RUNTIME=process), applies
examples/talkingvideo-minimal.yaml with kubectl, waits for it, shows `kubectl get tv` and
copies the video from S3 to out/demo-cluster/hello.mp4. `--keep` leaves it all running
until Ctrl-C (KUBECONFIG printed).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from kubernetes import client

from cluster import images, install
from cluster.controlplane import ControlPlane, ensure_binaries
from cluster.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from cluster.session import Cluster, api_client
from cluster.testnode import TestNode

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "talkingvideo-minimal.yaml"
NAMESPACE = "demo"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo-cluster", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo-cluster", help="where the video is copied")
    args = parser.parse_args(argv)

    say("building or finding etcd, kube-apiserver, kube-controller-manager (tests/k8s/build.sh)")
    plane = ControlPlane(ensure_binaries())
    s3 = S3Server()
    node: TestNode | None = None
    try:
        plane.start()
        api = api_client(plane.kubeconfig_path)
        cluster = Cluster(plane.kubeconfig_path, api, plane)
        print(f"API server {plane.server}, kubeconfig {plane.kubeconfig_path}")

        say(f"S3 server at {s3.endpoint} with the example speech and portrait")
        s3.start()
        storage = s3.client()
        for bucket in ("media-in", "media-out"):
            storage.create_bucket(Bucket=bucket)
        for name in ("hello.wav", "portrait.jpg"):
            storage.upload_file(str(REPO / "examples" / "media" / name), "media-in", name)

        node = TestNode(api, "gpu-node", gpus=1, namespaces={NAMESPACE})
        how = f"from {images.OPERATOR_IMAGE} and {images.RUNNER_IMAGE}"
        if node.runtime == "process":
            how = "as local processes"
        say(f"a test node with 1 nvidia.com/gpu that runs the pods {how}")
        node.start()

        say("helm install multitalk ./helm (Helm library) into multitalk-system")
        install.install(cluster, install.chart_values(s3.endpoint))
        pod = install.wait_operator_running(cluster, node)
        print(f"operator pod {pod['metadata']['name']} running")

        say(f"namespace {NAMESPACE} with the S3 Secret")
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "s3"},
                "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
            },
        )

        def kubectl(*words: str, timeout: float = 60) -> None:
            print("$ kubectl " + " ".join(words), flush=True)
            print(cluster.kubectl(*words, timeout=timeout).stdout, end="", flush=True)  # raises on failure

        say("kubectl apply, then wait for the render")
        kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE.relative_to(REPO)))
        kubectl("wait", "-n", NAMESPACE, "--for=condition=Complete", "tv/hello", "--timeout=300s", timeout=320)
        kubectl("get", "tv", "-n", NAMESPACE)
        kubectl("get", "tv", "-n", NAMESPACE, "-o", "wide")
        kubectl("get", "jobs,pods", "-n", NAMESPACE, "-o", "wide")
        for pod, image in node.started:
            print(f"{pod} ran {'from ' + image if image else 'as a local process'}")

        say("the video in S3")
        for obj in storage.list_objects_v2(Bucket="media-out").get("Contents", []):
            print(f"s3://media-out/{obj['Key']}  {obj['Size']} bytes")
        args.out.mkdir(parents=True, exist_ok=True)
        storage.download_file("media-out", "hello.mp4", str(args.out / "hello.mp4"))
        print(f"copied to {args.out / 'hello.mp4'}")

        if args.keep:
            say(f"running; in another shell: export KUBECONFIG={plane.kubeconfig_path}; Ctrl-C stops it")
            done = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: done.set())
            signal.signal(signal.SIGTERM, lambda *_: done.set())
            done.wait()
        return 0
    except AssertionError as error:  # a kubectl step failed: its output is in the message
        print(error, file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
        s3.stop()
        plane.cleanup()


if __name__ == "__main__":
    sys.exit(main())
