"""A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager.

Built from the pinned release in tests/k8s (see tests/k8s/build.sh), started on loopback
with generated certificates the way controller-runtime's envtest does, plus a test node
that plays the kubelet for the Job's pods and a local S3 server.
"""
