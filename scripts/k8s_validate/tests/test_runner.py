"""runner: a check passes or fails for the right reason, and the summary counts both."""

import contextlib
import io
import sys
import unittest

from k8s_validate.runner import Checks, Outcome, fails_with, run


def script(code):
    """A command that runs `code` in this Python."""
    return [sys.executable, "-c", code]


class FailsWith(unittest.TestCase):
    def test_command_that_succeeds_fails_the_check(self):
        outcome = fails_with("anything", script("print('fine')"))
        self.assertFalse(outcome.ok)
        self.assertIn("expected this to fail, but it succeeded", outcome.output)

    def test_command_failing_for_another_reason_fails_the_check(self):
        code = "import sys\nfor i in range(8): print(f'line {i}')\nsys.exit('some other error')"
        outcome = fails_with(r"bogusKey.*not allowed", script(code))
        self.assertFalse(outcome.ok)
        lines = outcome.output.splitlines()
        self.assertEqual(lines[-1], "failed, but without the expected error /bogusKey.*not allowed/")
        self.assertEqual(len(lines), 6, "the last five lines of its output, then why")
        self.assertIn("some other error", outcome.output)

    def test_command_failing_with_the_expected_error_passes(self):
        for stream in ("sys.stdout", "sys.stderr"):
            with self.subTest(stream=stream):
                code = f"import sys\nprint('first')\nprint(\"'bogusKey' not allowed\", file={stream})\nsys.exit(1)"
                self.assertTrue(fails_with(r"'bogusKey' not allowed", script(code)).ok)

    def test_pattern_does_not_match_across_lines(self):
        code = "import sys\nprint('grace_seconds')\nprint('want integer')\nsys.exit(1)"
        self.assertFalse(fails_with(r"grace_seconds.*want integer", script(code)).ok)


class Counting(unittest.TestCase):
    def run_checks(self, body):
        checks = Checks()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            body(checks)
            code = checks.summary()
        return code, out.getvalue(), err.getvalue()

    def test_all_passing_ends_with_zero_failed_and_exit_zero(self):
        def body(checks):
            checks.check("one", lambda: Outcome(True, "hidden"))
            checks.check("two", run, script("pass"))

        code, out, err = self.run_checks(body)
        self.assertEqual(code, 0)
        self.assertEqual(out, "k8s-validation: 2 passed, 0 failed\n")
        self.assertEqual(err, "ok    one\nok    two\n")

    def test_failures_are_counted_listed_and_shown(self):
        def body(checks):
            checks.check("passes", lambda: Outcome(True))
            checks.check("fails", lambda: Outcome.of_problems(["a", "b"], "note"))
            checks.check("crashes", lambda: {}["missing"])
            checks.check("exits non-zero", run, script("import sys; print('why'); sys.exit(3)"))
            checks.fail("no binary", "no binary at x")

        code, out, err = self.run_checks(body)
        self.assertEqual(code, 1)
        self.assertEqual(out, "k8s-validation: 1 passed, 4 failed\n")
        self.assertIn("FAIL  fails\n      a\n      b\n      note\n", err)
        self.assertIn("FAIL  crashes\n      Traceback", err)
        self.assertIn("KeyError: 'missing'", err)
        self.assertIn("FAIL  exits non-zero\n      why\n", err)
        self.assertIn("FAIL  no binary at x\n", err)
        self.assertTrue(err.endswith("failed:\n  fails\n  crashes\n  exits non-zero\n  no binary\n"), err)

    def test_command_reads_no_stdin(self):
        outcome = run(script("import sys; print(repr(sys.stdin.read()))"))
        self.assertEqual(outcome.output.strip(), "''")


if __name__ == "__main__":
    unittest.main()
