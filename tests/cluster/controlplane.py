"""Start etcd + kube-apiserver + kube-controller-manager on loopback, like envtest does.

There is no scheduler and no kubelet: tests bind pods and post their status through
`cluster.testnode`. Everything listens on 127.0.0.1 on free ports and lives in one
temporary directory that `stop()` removes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import certs

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "k8s" / "build.sh"
SERVICE_CIDR = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"


def ensure_binaries() -> Path:
    """Build the pinned release into the cache when missing; return the bin directory."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(done.stdout.strip().splitlines()[-1])


def free_ports(count: int) -> list[int]:
    """Distinct free ports: each socket stays bound until all are picked (a port closed at once
    can be handed out again by the next bind: two ports picked one by one once collided)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def free_port() -> int:
    return free_ports(1)[0]


def kubeconfig(
    server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None, token: str | None = None
) -> str:
    """A single-context kubeconfig with inline data (JSON is valid YAML)."""
    user: dict[str, str] = {}
    if cert and key:
        user["client-certificate-data"] = _b64(cert.read_bytes())
        user["client-key-data"] = _b64(key.read_bytes())
    if token:
        user["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority-data": _b64(ca.read_bytes())}}
        ],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    return json.dumps(config, indent=2)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            # Own session: a Ctrl-C of pytest reaches us first, and teardown stops the group.
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class ControlPlane:
    """A loopback control plane. `start()` returns once the API is ready and the
    controller-manager has created the default service account."""

    bin_dir: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="multitalk-k8s-")))
    audit_log: bool = False
    processes: dict[str, Process] = field(default_factory=dict)
    apiserver_port: int = 0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def audit_log_path(self) -> Path:
        return self.workdir / "audit.log"

    def start(self, timeout: float = 120.0) -> None:
        self.certs = certs.generate(self.workdir / "pki", SERVICE_IP)
        etcd_port, peer_port, self.apiserver_port = free_ports(3)
        self.kubeconfig_path.write_text(
            kubeconfig(self.server, self.certs.ca, cert=self.certs.admin.cert, key=self.certs.admin.key)
        )
        kcm_config = self.workdir / "controller-manager.kubeconfig"
        kcm_config.write_text(
            kubeconfig(
                self.server,
                self.certs.ca,
                cert=self.certs.controller_manager.cert,
                key=self.certs.controller_manager.key,
            )
        )
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.processes["etcd"] = Process(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Throw-away data: skip fsync, as envtest does; keeps tests off the disk's latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        apiserver_args = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={self.certs.serving.cert}",
            f"--tls-private-key-file={self.certs.serving.key}",
            f"--client-ca-file={self.certs.ca}",
            f"--service-account-key-file={self.certs.service_account_pub}",
            f"--service-account-signing-key-file={self.certs.service_account_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            "--v=1",
        ]
        if self.audit_log:
            policy = self.workdir / "audit-policy.yaml"
            # Metadata level for every request: who asked for what, never bodies.
            policy.write_text(
                json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]})
            )
            apiserver_args += [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=batch",
                # The default buffer (10,000 events) overflows in a 1,000-object burst and drops
                # events silently: request counts would read low.
                "--audit-log-batch-buffer-size=1000000",
            ]
        self.processes["kube-apiserver"] = Process("kube-apiserver", apiserver_args, logs / "kube-apiserver.log")
        self.processes["kube-controller-manager"] = Process(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm_config}",
                f"--authentication-kubeconfig={kcm_config}",
                f"--authorization-kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.certs.service_account_key}",
                f"--root-ca-file={self.certs.ca}",
                # Each controller acts as its own service account, as in a real cluster.
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--v=1",
            ],
            logs / "kube-controller-manager.log",
        )
        try:
            self.processes["etcd"].start()
            self._wait(lambda: _http_ok(f"{etcd_url}/health"), "etcd", timeout)
            self.start_apiserver(timeout)
            self.processes["kube-controller-manager"].start()
            self._wait(self._default_service_account_exists, "kube-controller-manager", timeout)
        except BaseException:
            self.stop()
            raise

    def start_apiserver(self, timeout: float = 120.0) -> None:
        self.processes["kube-apiserver"].start()
        self._wait(lambda: self._get("/readyz") is not None, "kube-apiserver", timeout)

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop the API server (clients see connection refused), then start it again."""
        self.processes["kube-apiserver"].stop()
        time.sleep(down_seconds)
        self.start_apiserver()

    def stop(self, grace: float = 2.0) -> None:
        # Open watches hold a gracefully stopping API server for seconds: teardown kills soon.
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            if name in self.processes:
                self.processes[name].stop(grace)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        context.load_cert_chain(str(self.certs.admin.cert), str(self.certs.admin.key))
        return context

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=5) as reply:
                body = reply.read()
        except (OSError, urllib.error.URLError):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def _default_service_account_exists(self) -> bool:
        return self._get("/api/v1/namespaces/default/serviceaccounts/default") is not None

    def _wait(self, ready: Any, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if not process.running():
                raise RuntimeError(
                    f"{name} exited with {process.popen and process.popen.returncode}:\n{process.tail()}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout:.0f} s:\n{process.tail()}")

    def metrics(self) -> str:
        """The API server's Prometheus metrics text."""
        text = self._get("/metrics")
        return text if isinstance(text, str) else ""


def _http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status == 200)
    return False


def main(argv: list[str] | None = None) -> int:
    """`python -m cluster.controlplane up DIR` for people (make cluster-up / cluster-down)."""
    import argparse

    parser = argparse.ArgumentParser(prog="cluster.controlplane", description=main.__doc__)
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write the admin kubeconfig")
    args = parser.parse_args(argv)
    plane = ControlPlane(ensure_binaries())
    plane.start()
    args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(plane.kubeconfig_path, args.kubeconfig)
    print(f"control plane up at {plane.server}; export KUBECONFIG={args.kubeconfig}", flush=True)
    print(f"logs: {plane.workdir / 'logs'}; stop with Ctrl-C or `make cluster-down`", flush=True)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        while not stop and all(p.running() for p in plane.processes.values()):
            time.sleep(0.5)
    finally:
        plane.cleanup()
        with contextlib.suppress(FileNotFoundError):
            args.kubeconfig.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
