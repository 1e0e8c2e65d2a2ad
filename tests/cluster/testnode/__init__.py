"""A test node: plays scheduler and kubelet for one Node.

No kubelet runs here, so this helper registers a Node with `nvidia.com/gpu` capacity,
binds pending pods that fit it (nodeSelector and GPU count; no scheduling gates), runs each
pod's container, and posts pod status the way a kubelet does: Running, then terminated
with the exit code and the termination message read from the result file.

How it runs a container (`runtime`, or MULTITALK_TEST_NODE_RUNTIME): from the image the pod
names, with podman, whenever that image is in local storage (`make images`), with the
pod's uid, env, mounts and a read-only root ("auto", the default; "image": always); or its
command as a local process from this virtualenv ("process": quick runs without images).
Mode "noop" completes every bound pod at once with exit code 0 (scale benchmark).

What it does not do (documented limits): init/sidecar containers, probes, image pulls,
resource limits, pod networking (every pod shares the node's network), affinity and
tolerations (the node has no taints). As a local process, a mount path found at the start
of an env value or argument is rewritten to a per-pod local folder.

One module per concern:
- scheduling: which pending pods fit the node, binding them, reporting those that do not;
- podenv: the container's environment (env, envFrom, secrets, config maps, field refs,
  mount paths, the service-account kubeconfig);
- container: a pod's container as a `podman run` command line (pure);
- process: starting a pod's container, running it, posting its terminated status;
- node: the Node object, its heartbeats, the pod watch and the reconcile loop, finishing
  deletions.
"""

from cluster.testnode.node import TestNode

__all__ = ["TestNode"]
