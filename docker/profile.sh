# shellcheck shell=sh
# /etc/profile.d/k8snet.sh: the course's venv first on PATH in login shells too.
# JupyterLab's terminal starts `bash -l`, and Debian's /etc/profile resets PATH for root to
# the system directories, which drops the image's ENV PATH (and with it `k8snet`, `jupyter`,
# `pytest`). The system directories stay: `ip`, `birdc`, `iptables` live in /usr/sbin.
case ":${PATH}:" in
*:/opt/k8snet/venv/bin:*) ;;
*) PATH="/opt/k8snet/venv/bin:${PATH}" ;;
esac
VIRTUAL_ENV=/opt/k8snet/venv
export PATH VIRTUAL_ENV
