"""JupyterHub as on EMR, for real: log in, open the notebook from S3, Run All in the PySpark kernel, see the figures.

``fruits hub``'s :class:`~fruits.cloud.hub.runner.LocalHub` runs the real programs: JupyterHub
6 with PAM in its own mount and PID namespaces (its own ``/etc``), configurable-http-proxy over
HTTPS, single-user servers spawned as each user, s3contents against a moto bucket, sparkmagic's
PySpark kernel against the Livy double (real PySpark behind it), and the project's users step
(``bootstrap/jupyterhub-users.sh``, unchanged) with the real AWS CLI against moto's Secrets
Manager. Chromium, driven by Playwright, is the user: every request to anything but 127.0.0.1
is aborted. Screenshots of each step are left in the test's folder (and in
``$FRUITS_SCREENSHOTS`` when set).

Needs root (namespaces, PAM users), ``make env`` (configurable-http-proxy from npm) and
``make browser`` (Chromium); where one is missing the tests skip with the reason, and under
``CI=true`` they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from tests.conftest import ON_CI, copy_slice
from tests.test_emr import moto  # noqa: F401 - a fixture used here

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("FRUITS_CHROMIUM", "/usr/bin/chromium"))
BUCKET = "fruits-hub-test"
REGION = "eu-west-3"
NOTEBOOK = "fruits/02-featurize-emr.ipynb"
#: Figure cells of the notebook (as tests/test_livy_notebook.py counts them).
FIGURES = 9
def hub_test(test):
    """The tests that start a hub: real images and weights, Spark through Livy, minutes each."""
    return pytest.mark.slow(pytest.mark.spark(test))


def test_without_root_fruits_hub_says_so_in_one_line_and_fails(monkeypatch, capsys, tmp_path):
    from fruits.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["hub", "--state", str(tmp_path / "state")]) == 1
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1 and "fruits hub needs root" in printed.err
    assert not (tmp_path / "state").exists()


def unavailable(reason: str):
    if ON_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def prerequisites():
    """Root and namespaces, configurable-http-proxy, Chromium and Playwright: or the reason why not."""
    from fruits.cloud.hub.container import HubUnavailable, check_prerequisites
    from fruits.cloud.hub.runner import check_proxy

    try:
        check_prerequisites()
        check_proxy()
    except HubUnavailable as exc:
        unavailable(str(exc))
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM}: run `make browser` (Debian's chromium package)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        unavailable(f"playwright is not installed ({exc}): pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def livy(tmp_path_factory, prerequisites):
    """The Livy double, shared by both hubs of the module (as Livy outlives nothing on EMR: one per cluster
    would do too; one here saves a Spark start)."""
    from fruits.cloud.livy.server import LivyDouble

    with LivyDouble(work_dir=tmp_path_factory.mktemp("livy"), startup_timeout=300) as server:
        yield server


def host_users() -> str:
    """A digest of the host's user database, to show the hub never changes it."""
    return hashlib.sha256(b"".join(Path(f"/etc/{name}").read_bytes() for name in ("passwd", "shadow", "group")))\
        .hexdigest()


def start_hub(state: Path, *, endpoint: str, livy_url: str):
    from fruits.cloud.hub.aws import free_port
    from fruits.cloud.hub.runner import LocalHub

    hub = LocalHub(state, users=["alice", "bob"], port=free_port(), bucket=BUCKET, region=REGION,
                   endpoint_url=endpoint, livy_url=livy_url, echo=lambda line: print("hub:", line))
    hub.start()
    return hub


@pytest.fixture(scope="module")
def hub(prerequisites, moto, livy, tmp_path_factory):  # noqa: F811 - the imported fixture
    """A running hub (users alice and bob) on a moto bucket that outlives it; stopped at the end."""
    before = host_users()
    started = time.monotonic()
    running = start_hub(tmp_path_factory.mktemp("hub-state"), endpoint=moto, livy_url=livy.url)
    print(f"hub ready after {time.monotonic() - started:.1f}s: {running.timings}")
    try:
        yield running
    finally:
        running.stop()
        assert host_users() == before, "the host's passwd, shadow or group changed"


def login(hub, user: str, password: str) -> tuple[int, str]:
    """POST the login form as a browser would; (status, where it redirects)."""
    import requests

    session = requests.Session()
    session.get(f"{hub.url}/hub/login", verify=False, timeout=60)
    answer = session.post(f"{hub.url}/hub/login", verify=False, timeout=60, allow_redirects=False,
                          data={"username": user, "password": password, "_xsrf": session.cookies.get("_xsrf")})
    return answer.status_code, answer.headers.get("Location", "")


def shadow_of(hub) -> bytes:
    return (hub.state.etc / "shadow").read_bytes()


@hub_test
def test_the_users_step_is_idempotent_and_a_rotated_password_replaces_the_old_one(hub):
    from fruits.cloud.hub.aws import aws_environment, fruits_command

    assert "locked jovyan" in hub.users_step_output and "created user alice" in hub.users_step_output
    assert b"\nalice:$6$" in shadow_of(hub) and b"\njovyan:!" in shadow_of(hub)
    shadow, passwd = shadow_of(hub), (hub.state.etc / "passwd").read_bytes()
    again = hub.run_users_step()
    assert (shadow_of(hub), (hub.state.etc / "passwd").read_bytes()) == (shadow, passwd)
    assert "jovyan is already locked" in again and "every user is already registered" in again
    assert again.count("is already the current version") == 2 and "created user" not in again

    old = hub.password("bob")
    assert login(hub, "bob", old)[0] == 302
    fruits_command("emr", "users", "--bucket", BUCKET, "--rotate", "bob", env=aws_environment(hub.endpoint_url, REGION))
    new = hub.password("bob")
    assert new != old
    assert login(hub, "bob", new)[0] == 403, "the cluster keeps the old password until the step runs"
    step = hub.run_users_step()
    assert "password hash of bob set" in step and "password hash of alice" not in step
    assert login(hub, "bob", new)[0] == 302
    assert login(hub, "bob", old)[0] == 403
    assert login(hub, "jovyan", "jupyter")[0] == 403


# --- in the browser ----------------------------------------------------------------------------------------

class Browser:
    """Chromium through Playwright; every request to anything but 127.0.0.1 aborted and recorded.

    Screenshots are numbered in the order taken, across browsers (``count`` is the class's).
    """

    count = 0

    def __init__(self, playwright, shots: list[Path]):
        self.chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"])
        self.blocked: list[str] = []
        self.shots = shots

    def new_page(self):
        context = self.chromium.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})

        def route(route):
            if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
                route.continue_()
            else:
                self.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        return context.new_page()

    def shot(self, page, name: str) -> Path:
        Browser.count += 1
        paths = [folder / f"{Browser.count:02d}-{name}.png" for folder in self.shots]
        page.screenshot(path=str(paths[0]))
        for path in paths[1:]:
            shutil.copy(paths[0], path)
        return paths[0]

    def close(self):
        self.chromium.close()


def log_in(page, hub, user: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/login", wait_until="load")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")


def open_lab(page, hub, user: str, browser: Browser) -> None:
    """After a login: wait for the user's JupyterLab (its server spawned as that user)."""
    page.wait_for_url(f"{hub.url}/user/{user}/lab**", timeout=180_000)
    page.wait_for_selector(".jp-DirListing-content", timeout=120_000)
    news = page.locator(".jp-toast-button:has-text('No'), .jp-Notification-Toast button:has-text('No')")
    try:  # JupyterLab asks whether to fetch Jupyter news (from outside: blocked anyway); answer no
        news.first.click(timeout=5_000)
    except Exception:  # noqa: BLE001 - not asked
        pass
    browser.shot(page, f"{user}-lab")


def listing(page) -> list[str]:
    page.wait_for_timeout(500)
    return page.eval_on_selector_all(".jp-DirListing-item .jp-DirListing-itemText",
                                     "items => items.map(i => i.textContent.trim())")


def open_item(page, name: str) -> None:
    page.locator(".jp-DirListing-item", has_text=name).first.dblclick()


def set_parameters(s3, key: str, values: dict) -> None:
    """Point the notebook in S3 at the test's slice, as a person would edit it before Run All.

    ``fruits emr upload`` gives each user's copy papermill's ``injected-parameters`` cell (the
    bucket's paths) after the ``parameters`` cell; a value is rewritten in the last of the two
    that sets it, since that one wins when the notebook runs.
    """
    notebook = nbformat.reads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode(), as_version=4)
    (defaults,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    (injected,) = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    for name, value in values.items():
        for cell in (injected, defaults):
            lines = cell.source.splitlines()
            found = [i for i, line in enumerate(lines) if line.startswith(f"{name} =")]
            if found:
                lines[found[-1]] = f"{name} = {value!r}"
                cell.source = "\n".join(lines)
                break
        else:
            raise AssertionError(f"{key}: no cell sets {name}")
    s3.put_object(Bucket=BUCKET, Key=key, Body=nbformat.writes(notebook).encode())


def prompts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-Notebook .jp-CodeCell .jp-InputPrompt",
                                     "ps => ps.map(p => p.textContent.trim())")


KERNEL_IDLE = "document.body.innerText.includes('PySpark | Idle')"


def open_notebook(page, name: str) -> None:
    """Open ``name`` from the file browser; return once its PySpark kernel is idle."""
    open_item(page, name)
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)


def run_all(page, *, timeout: float) -> float:
    """Run ▸ Run All Cells; seconds until no cell is running or queued and the kernel is idle (bounded)."""
    page.click(".lm-MenuBar-item:has-text('Run')")
    page.click(".lm-Menu-item:has-text('Run All Cells')")
    started = time.monotonic()
    page.wait_for_function("[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
                           ".some(p => /[*0-9]/.test(p.textContent))", timeout=60_000)
    while True:
        shown = prompts(page)
        if not any("*" in p for p in shown) and page.evaluate(KERNEL_IDLE):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"Run All still running after {timeout:.0f}s: {shown}"
        page.wait_for_timeout(2000)


def error_outputs(page) -> list[str]:
    return page.eval_on_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], .jp-RenderedText.jp-mod-trusted "
        "pre:has-text('Traceback'), .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']",
        "outputs => outputs.map(o => o.textContent.slice(0, 400))")


def figures_shown(page) -> list[int]:
    """Natural widths of the figures the notebook shows (0: an image that did not decode)."""
    return page.eval_on_selector_all(".jp-Notebook .jp-RenderedImage img", "images => images.map(i => i.naturalWidth)")


def saved_notebook(s3, key: str):
    return nbformat.reads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode(), as_version=4)


def outputs_of(notebook) -> tuple[int, list[str]]:
    """(figures, error outputs) in a saved notebook."""
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    errors = [o.get("ename", "") or o.get("text", "")[:300] for o in outputs
              if o["output_type"] == "error" or (o["output_type"] == "stream" and o.get("name") == "stderr")]
    return figures, errors


@hub_test
def test_alice_runs_the_notebook_from_s3_in_the_browser_and_bob_does_not_see_it(
        hub, moto, livy, real_images, real_weights, tmp_path_factory, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from fruits.cloud.hub.aws import clients

    s3, _ = clients(hub.endpoint_url, REGION)
    alice_key, bob_key = f"jupyter/alice/{NOTEBOOK}", f"jupyter/bob/{NOTEBOOK}"
    images = copy_slice(real_images / "Test", tmp_path_factory.mktemp("slice") / "Test", classes=3, per_class=8)
    output = tmp_path / "alice-runs"
    set_parameters(s3, alice_key, {"input_path": str(images), "output_dir": str(output),
                                   "weights": str(real_weights), "k": 5})
    shots = [tmp_path / "screenshots"]
    if os.environ.get("FRUITS_SCREENSHOTS"):
        shots.append(Path(os.environ["FRUITS_SCREENSHOTS"]))
    for folder in shots:
        folder.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = Browser(playwright, shots)
        try:
            page = browser.new_page()
            log_in(page, hub, "jovyan", "jupyter")
            page.wait_for_selector("text=Invalid username or password", timeout=30_000)
            assert "/hub/login" in page.url
            browser.shot(page, "jovyan-refused")

            log_in(page, hub, "alice", hub.password("alice"))
            open_lab(page, hub, "alice", browser)
            assert listing(page) == ["fruits"]
            open_item(page, "fruits")
            page.wait_for_selector(".jp-DirListing-item:has-text('02-featurize-emr.ipynb')", timeout=30_000)
            assert listing(page) == ["02-featurize-emr.ipynb"]
            browser.shot(page, "alice-s3-folder")

            open_notebook(page, "02-featurize-emr.ipynb")
            browser.shot(page, "alice-notebook-open")
            seconds = run_all(page, timeout=1200)
            print(f"Run All on {len(list(images.rglob('*.jpg')))} images: {seconds:.1f}s in the browser")
            assert all(p.strip("[]:").isdigit() for p in prompts(page)), prompts(page)
            assert error_outputs(page) == []
            widths = figures_shown(page)
            assert len(widths) >= FIGURES and all(w > 0 for w in widths), widths
            text = page.eval_on_selector(".jp-Notebook", "n => n.textContent")  # cells off screen included
            assert "cumulative variance at k" in text and "featurization speed" in text and "featurized" in text
            page.locator(".jp-Notebook .jp-RenderedImage img").nth(3).scroll_into_view_if_needed()
            browser.shot(page, "alice-figures")
            page.locator(".jp-Notebook .jp-OutputArea-output", has_text="cumulative variance at k").first\
                .scroll_into_view_if_needed()
            browser.shot(page, "alice-summary-table")

            page.keyboard.press("Control+s")
            page.wait_for_function("!document.querySelector('.jp-mod-current.jp-mod-dirty')", timeout=60_000)
            deadline = time.monotonic() + 60
            while outputs_of(saved_notebook(s3, alice_key))[0] < FIGURES:
                assert time.monotonic() < deadline, "the notebook saved to S3 has not its figures"
                time.sleep(1)
            figures, errors = outputs_of(saved_notebook(s3, alice_key))
            assert figures >= FIGURES and errors == []
            kept = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="jupyter/alice/")["Contents"]}
            assert {k for k in kept if not k.endswith("/.s3keep")} == {alice_key}, kept  # no jupytext .py copy
            page.goto(f"{hub.url}/hub/logout", wait_until="load")

            log_in(page, hub, "bob", hub.password("bob"))
            open_lab(page, hub, "bob", browser)
            assert listing(page) == ["fruits"]
            open_item(page, "fruits")
            page.wait_for_selector(".jp-DirListing-item:has-text('02-featurize-emr.ipynb')", timeout=30_000)
            browser.shot(page, "bob-s3-folder")
            assert outputs_of(saved_notebook(s3, bob_key))[0] == 0, "bob's folder holds his own copy, not alice's"
            contents = page.request.get(f"{hub.url}/user/bob/api/contents/fruits/02-featurize-emr.ipynb")
            assert contents.ok and outputs_of(nbformat.from_dict(contents.json()["content"]))[0] == 0
            trespass = page.request.get(f"{hub.url}/user/alice/api/contents/fruits/02-featurize-emr.ipynb",
                                        max_redirects=0)
            # alice's server sends bob to the hub's OAuth (302), which refuses him (403): never her file.
            assert trespass.status in (302, 403), (trespass.status, trespass.text()[:200])
            refused = page.goto(f"{hub.url}/user/alice/lab", wait_until="load")
            browser.shot(page, "bob-tries-alices-server")
            assert refused is not None and refused.status == 403, (refused and refused.status, page.url)
            assert "image/png" not in page.content()
            print("requests aborted (not to 127.0.0.1):", browser.blocked[:10])
        except BaseException:
            browser.shot(page, "failed")
            print("the hub's log:\n" + hub.container.log_tail(120) if hub.container else "(hub stopped)")
            raise
        finally:
            browser.close()

    hub.stop()  # the cluster goes; the bucket stays
    started = time.monotonic()
    again = start_hub(tmp_path_factory.mktemp("hub-state-2"), endpoint=hub.endpoint_url, livy_url=livy.url)
    print(f"second hub ready after {time.monotonic() - started:.1f}s")
    try:
        assert "created user alice" in again.users_step_output  # a new container: users made again
        with sync_playwright() as playwright:
            browser = Browser(playwright, shots)
            try:
                page = browser.new_page()
                log_in(page, again, "alice", again.password("alice"))
                open_lab(page, again, "alice", browser)
                open_item(page, "fruits")
                page.wait_for_selector(".jp-DirListing-item:has-text('02-featurize-emr.ipynb')", timeout=30_000)
                open_notebook(page, "02-featurize-emr.ipynb")
                page.wait_for_selector(".jp-Notebook .jp-RenderedImage img", timeout=60_000)
                page.locator(".jp-Notebook .jp-RenderedImage img").nth(3).scroll_into_view_if_needed()
                browser.shot(page, "alice-after-restart")
                assert len(figures_shown(page)) >= FIGURES
            finally:
                browser.close()
    finally:
        again.stop()
    print("screenshots:", ", ".join(str(p) for p in sorted(shots[0].iterdir())))
