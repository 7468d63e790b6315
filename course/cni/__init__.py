"""CNI: the plugin a container runtime calls to give each pod its network, and the runtime.

- `course.cni.bridge`: a real CNI plugin (an executable), shaped like the reference
  `bridge` plugin; IPAM delegated to Debian's `host-local` (`course.cni.ipam`).
- `course.cni.skel`, `course.cni.errors`, `course.cni.types`: the protocol: environment
  variables and stdin in, a result or an error object out, the result schema.
- `course.cni.netlink`: the few rtnetlink messages the plugin sends (standard library only).
- `course.cni.runtime`: what containerd does through libcni: read a `.conflist`, find each
  plugin in CNI_PATH, run the chain (ADD in order, DEL in reverse), cache the result.
- `course.cni.install`: put the plugin into a plugin directory (`k8snet cni install DIR`).

Nothing is imported here on purpose: the plugin executable imports only what it needs.
"""
