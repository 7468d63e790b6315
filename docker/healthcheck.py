"""Docker healthcheck: healthy once JupyterLab's server answers its version endpoint.

Why /api: it is the one endpoint Jupyter serves without a token, so the check needs no secret
and proves the HTTP server is up and routing, not merely that a port is open.
Uses only the standard library and the system Python (starts in ~20 ms).
"""

import json
import sys
import urllib.request

URL = "http://127.0.0.1:8888/api"


def main(url: str = URL) -> int:
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
