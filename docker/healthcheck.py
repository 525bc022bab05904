"""Container health probe: GET /healthz on the local gunicorn, exit 0 only on HTTP 200.

Django answers 400 to a Host header that is not in ALLOWED_HOSTS, so the probe presents the
first allowed host instead of 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/healthz"


def probe_host() -> str:
    first = os.environ.get("ALLOWED_HOSTS", "").split(",")[0].strip().lstrip(".")
    return "localhost" if first in {"", "*"} else first


def main() -> int:
    request = urllib.request.Request(URL, headers={"Host": probe_host()})
    try:
        # S310 warns about file:// and custom schemes; the URL is a fixed http:// constant.
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"healthz unreachable: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
