"""The report's interactive map, built while the notebook still draws its figures.

``fruits run`` renders the HTML report after papermill ends, and the interactive map
(:mod:`fruits.report.interactive`) was the longest part of it: a thumbnail of every
mapped image (up to 2,400) and plotly's figure, about 2 s of a 2,040-image run's 3.2 s
of rendering. The map reads nothing but the run's written outputs, and those are
complete once the run's folder ``OUTPUT/runs/<run id>/`` exists (a run is written into
a staging folder that takes that name only when every output is in it,
:mod:`fruits.storage.staged`), seconds before the notebook's figure cells end. Meanwhile
the CLI only waits on the kernel. :class:`EarlyMap` waits in a thread of the CLI for that
folder's manifest and builds the map then, and imports the renderer's libraries while
it waits.

The renderer still decides whether a map belongs in the report
(:func:`fruits.report.html.run_outputs`: the notebook succeeded, the run is this
execution's) and asks :meth:`EarlyMap.build` for it: the early map for the same run
folder, otherwise (another folder, an early build that failed, a folder that never
appeared) a map built there and then, as before.
"""

from __future__ import annotations

import logging
import threading

from fruits.storage import location
from fruits.storage.layout import OutputLayout

log = logging.getLogger(__name__)

#: How often the thread looks for the run's manifest (a local ``stat``).
POLL_SECONDS = 0.2

#: The longest :meth:`EarlyMap.build` waits for an early build under way before building itself.
JOIN_SECONDS = 120.0


def build_map(run_folder: str) -> str:
    """The interactive map of ``run_folder``, built now (what the renderer does without an early map)."""
    from fruits.report import interactive  # pandas and plotly: only when a map is drawn

    return interactive.build(run_folder)


class EarlyMap:
    """Build the interactive map of the local run folder ``run_folder`` as soon as its manifest exists.

    Use :meth:`start` before the notebook runs, :meth:`stop` once it ended, and pass
    :meth:`build` to the renderer (``render_html(..., map_builder=early.build)``).
    Remote folders are not polled (each look would be a request): :meth:`build` builds
    their map when asked.
    """

    def __init__(self, run_folder: str, *, poll_seconds: float = POLL_SECONDS):
        self.run_folder = run_folder
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._fragment: str | None = None
        self._thread = threading.Thread(target=self._work, name="fruits-early-map", daemon=True)
        #: Whether the report's map was the early one (``timings.json`` records it).
        self.used = False

    def start(self) -> "EarlyMap":
        if not location.is_remote(self.run_folder):
            self._thread.start()
        return self

    def stop(self) -> None:
        """No more waiting for the manifest; a build already under way finishes."""
        self._stop.set()

    def _work(self) -> None:
        _import_the_renderer()
        manifest = OutputLayout(self.run_folder).manifest
        while not location.exists(manifest):
            if self._stop.wait(self.poll_seconds):
                return
        try:
            self._fragment = build_map(self.run_folder)
        except Exception as exc:  # noqa: BLE001 - the renderer builds it again and reports what fails (once)
            log.debug("report: the early interactive map failed (%s); the renderer builds it", exc)

    def build(self, run_folder: str) -> str:
        """The map of ``run_folder``: the early one when it was built for that folder, else built now."""
        if run_folder == self.run_folder:
            if self._thread.is_alive():
                self._thread.join(JOIN_SECONDS)
            if self._fragment is not None:
                self.used = True
                return self._fragment
        return build_map(run_folder)


def _import_the_renderer() -> None:
    """Import what rendering the report needs (about 1.5 s), while the kernel starts and works."""
    try:
        import nbconvert  # noqa: F401
        import pandas  # noqa: F401
        import PIL.Image  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:  # plotly is optional; the renderer says what is missing
        pass
