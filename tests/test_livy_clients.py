"""The Livy double against two real Livy clients: pylivy (PyPI ``livy``) and sparkmagic's client classes.

pylivy is written against Apache Livy's REST API independently of sparkmagic: it asks
``GET /version`` first and reads statement outputs its own way (``text/plain``,
``application/json``, ``ename``/``evalue``/``traceback``). Both talk here to the real
double, whose sessions are real PySpark REPL processes, step by step as their users do.
sparkmagic also drives the double in ``tests/test_livy_notebook.py`` (the cloud notebook
through papermill and its PySpark kernel).
"""

from __future__ import annotations

import re

import pytest
import requests
from livy.client import LivyClient
from livy.models import Version

from fruits.cloud.livy.server import LivyDouble
from fruits.spark.jvm_archive import usable_archive

#: The fields of Livy 0.8's ``SessionInfo`` (client-common/.../HttpMessages.java).
SESSION_INFO_FIELDS = {"id", "name", "appId", "owner", "proxyUser", "state", "kind", "appInfo", "log", "ttl",
                       "driverMemory", "driverCores", "executorMemory", "executorCores", "conf", "archives",
                       "files", "heartbeatTimeoutInSecond", "jars", "numExecutors", "pyFiles", "queue"}


@pytest.fixture(scope="module")
def livy(tmp_path_factory):
    """The Livy double on 127.0.0.1 (a free port), its sessions stopped at the end."""
    with LivyDouble(work_dir=tmp_path_factory.mktemp("livy"), startup_timeout=240) as server:
        yield server


def test_version_answers_as_livy_0_8_does_and_pylivy_reads_it(livy):
    answer = requests.get(f"{livy.url}/version", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    # LivyServer.scala's livyVersionServlet: the keys of livy-version-info.properties (dev/livy-build-info.sh).
    assert set(answer.json()) == {"version", "user", "revision", "branch", "date", "url"}
    client = LivyClient(livy.url)
    try:
        assert client.server_version() == Version("0.8.0-incubating")
        assert not client.legacy_server()  # so pylivy offers Livy 0.5+'s session kinds
    finally:
        client.close()


@pytest.mark.spark
def test_pylivy_creates_runs_downloads_fails_and_closes_a_session(livy):
    from livy import LivySession, SessionKind, SessionState
    from livy.models import SparkRuntimeError, StatementKind

    before = len(livy.requests)
    with LivySession.create(livy.url, kind=SessionKind.PYSPARK, name="pylivy-test", driver_memory="1g",
                            spark_conf={"spark.sql.shuffle.partitions": "2"}, echo=False) as session:
        session_id = session.session_id
        assert session.state == SessionState.IDLE
        record = requests.get(f"{livy.url}/sessions/{session_id}", timeout=10).json()
        assert set(record) == SESSION_INFO_FIELDS and record["name"] == "pylivy-test"
        assert record["driverMemory"] == "1g" and record["conf"] == {"spark.sql.shuffle.partitions": "2"}

        # run: what the code printed, then the last expression's value, as text/plain
        assert session.run("x = 6 * 7\nprint('hello')\nx").text == "hello\n42"

        # the double's driver JVM maps the class archive `make env` recorded (when there is one)
        arguments = session.run("print(list(spark.sparkContext._jvm.java.lang.management.ManagementFactory"
                                ".getRuntimeMXBean().getInputArguments()))").text
        archive = usable_archive()
        if archive is not None:
            assert f"-XX:SharedArchiveFile={archive}" in arguments, arguments

        # download: pylivy prints the DataFrame's rows as JSON and reads them back into pandas
        session.run("df = spark.createDataFrame([(1, 'apple'), (2, 'banana')], ['id', 'fruit'])")
        frame = session.download("df")
        assert frame.to_dict("list") == {"id": [1, 2], "fruit": ["apple", "banana"]}

        # %json: Livy's magic answers application/json, which pylivy exposes as Output.json
        output = session.run("rows = [row.asDict() for row in df.orderBy('id').collect()]\n%json rows")
        assert output.json == [{"id": 1, "fruit": "apple"}, {"id": 2, "fruit": "banana"}]

        # an exception in the session raises pylivy's error with Livy's ename, evalue and traceback
        with pytest.raises(SparkRuntimeError) as raised:
            session.run("def divide():\n    return 1 / 0\n\ndivide()")
        assert (raised.value.ename, raised.value.evalue) == ("ZeroDivisionError", "division by zero")
        assert raised.value.traceback[0].startswith("Traceback") and raised.value.traceback[-1].startswith(
            "ZeroDivisionError")
        assert not any('in <module>' in line for line in raised.value.traceback)  # cut as Livy's REPL cuts it
        assert session.run("spark.range(5).count()").text == "5"  # the session survives its user's error

        # a statement of another language is refused, not run as Python
        with pytest.raises(requests.HTTPError) as refused:
            session.client.create_statement(session_id, "SELECT 1", kind=StatementKind.SQL)
        assert refused.value.response.status_code == 400 and "only Python" in refused.value.response.text
        process = livy.sessions[session_id].process

    # close: Livy's DELETE answers once the session stopped; then the session is unknown (404 -> None)
    assert process.poll() is not None
    client = LivyClient(livy.url)
    try:
        assert client.get_session(session_id) is None
    finally:
        client.close()

    talk = [(r["method"], re.sub(r"/[0-9]+", "/{id}", r["path"])) for r in livy.requests[before:]]
    assert talk[0] == ("GET", "/version")  # pylivy asks before it creates the session
    sessions = [r["body"] for r in livy.requests[before:] if (r["method"], r["path"]) == ("POST", "/sessions")]
    assert sessions == [{"kind": "pyspark", "driverMemory": "1g", "name": "pylivy-test",
                         "conf": {"spark.sql.shuffle.partitions": "2"}}]
    assert talk.count(("DELETE", "/sessions/{id}")) == 1


def test_logs_statements_and_lists_page_as_livy_does(livy, tmp_path):
    """Livy's paging (``from``, ``size``, ``order``) on a session record with no process behind it."""
    from fruits.cloud.livy.server import Session, Statement

    log = tmp_path / "session.log"
    log.write_text("".join(f"line {n}\n" for n in range(150)))
    session = Session(id=900, body={"kind": "pyspark"}, log_path=log, state="idle",
                      statements=[Statement(id=n, code=f"{n}", state="available") for n in range(3)])
    livy.sessions[900] = session
    try:
        def get(path, **query):
            return requests.get(f"{livy.url}{path}", params=query, timeout=10)

        assert get("/sessions/900").json()["log"] == [f"line {n}" for n in range(140, 150)]  # the last 10
        page = get("/sessions/900/log").json()  # serializeLogs: the last 100 by default
        assert (page["from"], page["total"], page["log"][0], len(page["log"])) == (50, 150, "line 50", 100)
        assert len(get("/sessions/900/log", size=-1).json()["log"]) == 150
        assert get("/sessions/900/log", **{"from": 2, "size": 3}).json()["log"] == ["line 2", "line 3", "line 4"]
        listed = get("/sessions/900/statements", order="desc", size=2).json()
        assert listed["total_statements"] == 3 and [s["id"] for s in listed["statements"]] == [2, 1]
        assert get("/sessions/900/state").json() == {"id": 900, "state": "idle"}
        sessions = get("/sessions", **{"from": 0, "size": 5}).json()
        assert sessions["total"] == len(livy.sessions) and 900 in [s["id"] for s in sessions["sessions"]]
        bad = get("/sessions", size="many")
        assert bad.status_code == 400 and "'size'" in bad.json()["msg"]
    finally:
        livy.sessions.pop(900)
    missing = requests.get(f"{livy.url}/sessions/900", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"msg": "Session '900' not found."}


@pytest.mark.spark
def test_sparkmagic_creates_runs_stores_fails_and_deletes_a_session(livy):
    """The same steps through sparkmagic's own client classes (what its PySpark kernel calls), in process."""
    from hdijupyterutils.ipythondisplay import IpythonDisplay
    from sparkmagic.livyclientlib.command import Command
    from sparkmagic.livyclientlib.endpoint import Endpoint
    from sparkmagic.livyclientlib.livyreliablehttpclient import LivyReliableHttpClient
    from sparkmagic.livyclientlib.livysession import LivySession as SparkmagicSession
    from sparkmagic.livyclientlib.sparkstorecommand import SparkStoreCommand
    from sparkmagic.utils import configuration

    from fruits.cloud.livy.client import sparkmagic_config

    saved = dict(configuration.d)  # sparkmagic's process-wide settings: restored at the end
    configuration.override_all(sparkmagic_config(livy.url, startup_timeout=240))
    http = LivyReliableHttpClient.from_endpoint(Endpoint(livy.url, None))
    session = SparkmagicSession(http, {"kind": "pyspark", "driverMemory": "1g"}, IpythonDisplay())
    try:
        session.start()
        assert session.status == "idle" and session.id in livy.sessions
        assert Command("x = 6 * 7\nprint('hello')\nx").execute(session) == (True, "hello\n42", "text/plain")
        Command("df = spark.createDataFrame([(1, 'apple'), (2, 'banana')], ['id', 'fruit'])").execute(session)
        frame = SparkStoreCommand("df", samplemethod="take", maxrows=10).execute(session)  # %%spark -o df
        assert frame.to_dict("list") == {"id": [1, 2], "fruit": ["apple", "banana"]}
        success, text, _ = Command("1 / 0").execute(session)
        assert not success and "ZeroDivisionError: division by zero" in text
        session_id, process = session.id, livy.sessions[session.id].process
        session.delete()
        assert process.poll() is not None and session_id not in livy.sessions
    finally:
        configuration.override_all(saved)
        if session.id in livy.sessions:  # a failure above: stop its process now
            livy.delete_session(livy.sessions[session.id])
