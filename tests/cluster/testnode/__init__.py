"""A test node: plays scheduler and kubelet for one Node, running containers as local processes.

No kubelet can run containers here, so this helper registers a Node with `nvidia.com/gpu`
capacity, binds pending pods that fit it (nodeSelector and GPU count; no scheduling gates),
runs the container's command with the pod's environment as a local process (the runner
from the virtualenv), and posts pod status the way a kubelet does: Running, then
terminated with the exit code and the termination message read from the result file.

Mode "noop" completes every bound pod at once with exit code 0 (scale benchmark).

What it does not do (documented limits): init/sidecar containers, probes, images, real
volume mounts (a mount path found at the start of an env value or argument is rewritten
to a per-pod local folder), affinity and tolerations (the node has no taints).

One module per concern:
- scheduling: which pending pods fit the node, binding them, reporting those that do not;
- podenv: the container's environment (env, envFrom, secrets, config maps, field refs,
  mount paths, the service-account kubeconfig);
- process: starting a pod's container, running it, posting its terminated status;
- node: the Node object, its heartbeats, the pod watch and the reconcile loop, finishing
  deletions.
"""

from cluster.testnode.node import TestNode

__all__ = ["TestNode"]
