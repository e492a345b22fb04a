"""The `backfill` command in the tests: as a process, the way a user or a scheduler runs it,
and in this process, for what ends before Spark starts (a usage error needs no JVM)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The console script `pip install -e .` put beside this Python.
INSTALLED = Path(sys.executable).parent / "backfill"


def python_env(env: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`env` (default: this process's environment) with the repository on the import path."""
    return {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT), **extra}


def run_python(
    module: str,
    *args: str | Path,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` from the repository, its output captured, in a process group
    of its own (a run that kills its group takes its JVM with it, and nothing of the tests)."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=python_env(env),
        timeout=timeout,
        start_new_session=True,
    )


def run_cli(
    *args: str,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    installed: bool = False,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`backfill ARGS` as a process, its output captured. `installed`: the console script,
    with no PYTHONPATH (a fold given by import path is found from the working directory);
    otherwise `python -m pipelines.cli` with the repository on the import path."""
    if not installed:
        return run_python("pipelines.cli", *args, cwd=cwd, env=env, timeout=timeout)
    plain = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(INSTALLED), *args], capture_output=True, text=True, cwd=cwd, env=plain, timeout=timeout
    )


def start_cli(
    *args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`backfill ARGS` started and left running: stdout dropped, stderr (the progress lines
    and the one-line error) a pipe, in its own process group so that a kill of the group
    takes its JVM too."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=python_env(env),
        start_new_session=True,
    )


def run_main(*args: str, spark: Any = None) -> subprocess.CompletedProcess[str]:
    """`pipelines.cli.main(ARGS)` in this process, with its output and exit code as a process
    would give them. Without `spark`, a command that asks for a Spark session fails the test:
    it proves a usage error is found before any JVM work. With `spark` (the tests' session),
    the command runs on it instead of building its own, and cannot stop it."""
    from pipelines import session

    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _replaced(session, "build_session", _refuse if spark is None else lambda *a, **k: spark),
        _replaced(spark, "stop", lambda: None) if spark is not None else contextlib.nullcontext(),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        from pipelines.cli import main

        try:
            code = main(list(args))
        except SystemExit as exit_:  # --help
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


class SparkStarted(BaseException):
    """Not an Exception: the command's last-resort handler must not turn it into a line."""


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise SparkStarted("the command asked for a Spark session")


@contextlib.contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.name` is `value` inside the block (an instance's method: only this instance's)."""
    own = vars(owner).get(name, _ABSENT)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if own is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, own)


_ABSENT = object()


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """Exit `code`, and stderr one line `backfill: ...` holding `text`, with no traceback."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("backfill: ") and text in lines[0]
    assert "Traceback" not in result.stderr
