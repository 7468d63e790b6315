"""Docker healthcheck: healthy once JupyterLab's server answers its version endpoint.

Why /api: it is the one endpoint Jupyter serves without a token, so the check needs no secret
and proves the HTTP server is up and routing, not merely that a port is open.
A container started for another command (`docker compose run --rm lab make test`) serves
no JupyterLab; the entrypoint marks the ones that do, and the others report healthy with a
note instead of turning "unhealthy" while their command runs.
Uses only the standard library and the system Python (starts in ~20 ms).
"""

import json
import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('K8SNET_PORT') or 8888}/api"
MARKER = os.environ.get("K8SNET_JUPYTER_MARKER", "/run/k8snet/jupyter")


def main(url: str = URL) -> int:
    if not os.path.exists(MARKER):
        print("no JupyterLab in this container: it runs another command")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            version = json.load(response).get("version")
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}")
        return 1
    print(f"jupyter_server {version}")
    return 0 if version else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
