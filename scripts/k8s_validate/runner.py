"""Counting checks: each one passes or fails, and its output is shown only when it fails.

A check is a function returning an :class:`Outcome`. External commands become outcomes through
:func:`run`; checks done here in Python turn their list of problems into one with
:meth:`Outcome.of_problems`. :class:`Checks` runs them, logs ``ok``/``FAIL`` lines to stderr, and
ends with the summary line on stdout.
"""

import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass


def log(message=""):
    """Progress goes to stderr; stdout carries only the summary line."""
    print(message, file=sys.stderr, flush=True)


class Abort(Exception):
    """The checks cannot go on (the repository is not what they expect): exit 2."""


@dataclass(frozen=True)
class Outcome:
    """What one check found: whether it passed, and the output that explains a failure."""

    ok: bool
    output: str = ""

    @classmethod
    def of_problems(cls, problems, note=""):
        """Passes when `problems` is empty; the output lists them, then `note`."""
        lines = list(problems) + ([note] if note else [])
        return cls(not problems, "\n".join(lines))


def run(argv, **kwargs):
    """Runs `argv` with no stdin; passes when it exits 0. The output is stdout and stderr together."""
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        **kwargs,
    )
    return Outcome(proc.returncode == 0, proc.stdout)


def fails_with(pattern, argv):
    """Passes when `argv` fails with an error that matches `pattern` (a regular expression searched
    line by line), so that it fails for the right reason."""
    outcome = run(argv)
    if outcome.ok:
        return Outcome(False, f"expected this to fail, but it succeeded: {shlex.join(argv)}")
    if not re.search(pattern, outcome.output, re.MULTILINE):
        tail = outcome.output.rstrip("\n").splitlines()[-5:]
        return Outcome(False, "\n".join([*tail, f"failed, but without the expected error /{pattern}/"]))
    return Outcome(True)


class Checks:
    """Runs checks and counts them."""

    def __init__(self):
        self.passed = 0
        self.failures = []

    def check(self, name, fn, *args):
        """Runs ``fn(*args)``, which returns an :class:`Outcome`, and records it under `name`.
        An exception is a failure with its traceback as the output. Returns whether it passed."""
        try:
            outcome = fn(*args)
        except Exception:  # a crash in one check must not stop the others
            outcome = Outcome(False, traceback.format_exc())
        self.record(name, outcome)
        return outcome.ok

    def must_fail(self, name, pattern, argv):
        """A check that `argv` fails with an error matching `pattern` (see :func:`fails_with`)."""
        return self.check(name, fails_with, pattern, argv)

    def record(self, name, outcome):
        """Counts `outcome` under `name` and logs it, with its output indented when it failed."""
        if outcome.ok:
            self.passed += 1
            log(f"ok    {name}")
            return
        self.failures.append(name)
        log(f"FAIL  {name}")
        for line in outcome.output.rstrip("\n").splitlines():
            log(f"      {line}")

    def fail(self, name, message):
        """Counts a failure that has no check to run: `message` is the whole log line."""
        self.failures.append(name)
        log(f"FAIL  {message}")

    def summary(self):
        """Lists the failures on stderr, prints the closing line on stdout, returns the exit code."""
        if self.failures:
            log()
            log("failed:")
            for name in self.failures:
                log(f"  {name}")
        print(f"k8s-validation: {self.passed} passed, {len(self.failures)} failed", flush=True)
        return 1 if self.failures else 0
