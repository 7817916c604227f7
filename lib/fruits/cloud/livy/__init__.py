"""A Livy-compatible REST server: a **test double** of Apache Livy, written by this project.

Apache Livy (what EMR's JupyterHub talks to through sparkmagic) cannot be installed
here, so tests and local tries of the cloud notebook use this stand-in instead. It
speaks the subset of Livy 0.8's REST protocol that real clients use (sparkmagic; pylivy,
which asks ``GET /version`` first), with Livy's states and output shapes, and runs real
work behind it: every session is a real PySpark Python process (``spark``, ``sc`` and
``sqlContext`` in its globals) built from the ``POST /sessions`` body, executing
statements with the semantics of Livy's own Python REPL (``fake_shell.py``: last
expression printed, ``%matplot``, ``%json``, ``%table``). It records every request
so tests can assert on the conversation.

- :mod:`fruits.cloud.livy.server`: the HTTP server and the sessions.
- :mod:`fruits.cloud.livy.repl`: the session process (Livy's Python REPL protocol).
- :mod:`fruits.cloud.livy.client`: sparkmagic's configuration and kernel, for papermill runs.
- :mod:`fruits.cloud.livy.rest`: a small Livy REST client with bounded waits (for any Livy, real or
  double: ``fruits emr doctor`` and ``fruits run --livy``'s reachability check).
"""
