"""Run the real jobmon-server 3.2.2 on 127.0.0.1 with a fresh SQLite database.

Usage (with a venv holding ``jobmon-server==3.2.2`` and ``pymysql``)::

    python serve_322.py PORT DB_PATH

Routes are at ``/`` (no prefix); ``GET /time`` answers once it is up. This
runs in the server's venv, not the project's: its imports go through
``importlib`` so that the project's type checker, which has none of these
packages, sees plain modules.
"""

from __future__ import annotations

import importlib
import os
import sys


def main() -> None:
    port, db = int(sys.argv[1]), sys.argv[2]
    # Jobmon reads its configuration when first imported: set it before.
    os.environ["JOBMON__DB__SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{db}"
    # jobmon-server 3.2.2 imports MySQLdb without declaring it; pymysql stands in.
    importlib.import_module("pymysql").install_as_MySQLdb()
    api = importlib.import_module("jobmon.server.web.api")
    web = importlib.import_module("jobmon.server.web")
    models = importlib.import_module("jobmon.server.web.models")
    serving = importlib.import_module("werkzeug.serving")
    app = api.get_app()
    # get_app() bound the engine to the session factory; emit the tables into the file.
    models.init_db(web.session_factory.kw["bind"])
    # Loopback only: the tests must never listen on, or reach, anything else.
    serving.run_simple("127.0.0.1", port, app, threaded=True)


if __name__ == "__main__":
    main()
