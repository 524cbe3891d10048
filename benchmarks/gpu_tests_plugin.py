"""pytest plugin for the GPU check's tests stage (``gpu_check.py``; loaded with ``-p gpu_tests_plugin``).

A GPU run is short and may be cut off; pytest writes its JUnit file only at the end, and ``-q``
names no test. This plugin, driven by environment variables, so that pytest-xdist's workers
load it the same way:

``DM_GPU_TESTS_FIRST``
    substrings of test ids, one a line, in order: the tests matching the first run first, and
    so on; the rest keep their collection order (the kernels that never ran on a GPU go first,
    so a cut-off run has checked them).
``DM_GPU_TESTS_ONLY``
    a file of test ids, one a line: only these run (the follow-up run of the tests a cut-off run
    did not reach); the others are deselected.
``DM_GPU_TESTS_PROGRESS``
    a JSON-lines file written as the run goes, one line per event, flushed each time:
    ``{"event": "collected", "ids": [...]}`` (the order they run in), ``{"event": "result",
    "id", "outcome" ("passed"/"failed"/"skipped"/"error"), "when", "seconds", "message"}`` per
    test (and per failing setup or teardown), ``{"event": "collect-error", "id", "message"}``
    per module that could not be imported, and ``{"event": "finished", "exitstatus"}``. Under
    pytest-xdist only the controller writes it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterable, List, Optional

import pytest


def _lines(text: Optional[str]) -> List[str]:
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def priority(test_id: str, first: Iterable[str]) -> int:
    """Index of the first pattern contained in ``test_id`` (len(first) where none is)."""
    first = list(first)
    return next((i for i, pattern in enumerate(first) if pattern in test_id), len(first))


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


class _Progress:
    def __init__(self, path: str):
        self.path = path
        self.f = open(path, "a", encoding="utf-8")

    def write(self, **event) -> None:
        event["t"] = round(time.time(), 3)
        self.f.write(json.dumps(event) + "\n")
        self.f.flush()


_progress: Optional[_Progress] = None


def pytest_configure(config):
    global _progress
    path = os.environ.get("DM_GPU_TESTS_PROGRESS")
    if path and not _is_worker(config):
        _progress = _Progress(path)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    only = os.environ.get("DM_GPU_TESTS_ONLY")
    if only:
        with open(only, encoding="utf-8") as f:
            wanted = set(_lines(f.read()))
        keep = [it for it in items if it.nodeid in wanted]
        dropped = [it for it in items if it.nodeid not in wanted]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    first = _lines(os.environ.get("DM_GPU_TESTS_FIRST"))
    if first:
        items.sort(key=lambda it: priority(it.nodeid, first))  # stable: the rest keep their order


def pytest_collection_finish(session):
    if _progress is not None:  # without xdist: this process ran the collection
        _progress.write(event="collected", ids=[it.nodeid for it in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    if _progress is not None and not getattr(_progress, "collected", False):
        _progress.collected = True  # every worker collects the same ids: written once
        _progress.write(event="collected", ids=list(ids), workers_reporting=str(node.gateway.id))


def pytest_collectreport(report):
    if _progress is not None and report.failed:
        _progress.write(event="collect-error", id=report.nodeid, message=_message(report))


def pytest_runtest_logreport(report):
    if _progress is None:
        return
    if report.when == "call" or report.outcome != "passed":
        if report.when != "call" and report.outcome == "failed":
            outcome = "error"
        else:
            outcome = report.outcome
        _progress.write(event="result", id=report.nodeid, outcome=outcome, when=report.when,
                        seconds=round(report.duration, 3), message=_message(report),
                        worker=getattr(report, "node", None) and str(report.node.gateway.id))


def pytest_sessionfinish(session, exitstatus):
    if _progress is not None:
        _progress.write(event="finished", exitstatus=int(exitstatus))


def _message(report) -> str:
    """One line: a skip's reason, or a failure's first ``E`` line (``E   AssertionError: ...``:
    the exception and its message), else its last line."""
    rep = report.longrepr
    if rep is None:
        return ""
    if isinstance(rep, tuple) and len(rep) == 3:  # a skip: (file, line, reason)
        return str(rep[2])[:300]
    text = getattr(report, "longreprtext", None) or str(rep)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E ")]
    return (errors[0] if errors else lines[-1] if lines else "")[:300]
