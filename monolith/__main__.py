"""`python -m monolith`: Flask's development server with auto-reload, for live coding in class.

Single process, single threaded by default, reloads on every save, and prints tracebacks: good for
teaching, wrong for measuring. Benchmarks and `make run` use gunicorn instead (see README).
"""

from __future__ import annotations

import os

from monolith.app import create_app

if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    create_app().run(host="127.0.0.1", port=port, debug=True, use_reloader=True)
