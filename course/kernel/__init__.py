"""Kernel access: namespaces, links, routes, sysctls and netfilter, through netlink.

Everything here is one level above the system calls and netlink messages, and one level
below the cluster model in `course.topology`.
"""

from course.kernel.netns import KernelError, Netns, entered_path, list_netns, pids_in_netns

__all__ = ["KernelError", "Netns", "entered_path", "list_netns", "pids_in_netns"]
