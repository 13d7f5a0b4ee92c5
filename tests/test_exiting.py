"""The command's process ends without the interpreter's teardown (`lvsweep.exiting`), and loses
nothing by it: exit handlers registered later still run, buffered output still arrives, and the
status is the one `sys.exit` gave. Each case is a fresh interpreter, as the command is."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent("""
    import atexit, sys
    from lvsweep.exiting import run_to_exit

    class Teardown:
        def __del__(self):
            sys.stderr.write("teardown ran\\n")

    KEPT = Teardown()  # freed only by the interpreter's teardown

    def main():
        atexit.register(lambda: print("later handler ran"))
        print("buffered output")  # a pipe's stdout is block-buffered: written at the end
        {how}

    run_to_exit(main)
""")


def run(how: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROGRAM.format(how=how)], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("how, status", [("return", 0), ("sys.exit()", 0), ("sys.exit(3)", 3),
                                         ("sys.exit(143)", 143), ("sys.exit('a reason')", 1)])
def test_the_process_ends_with_its_status_its_output_and_its_exit_handlers_but_no_teardown(how, status):
    proc = run(how)
    assert proc.returncode == status
    assert proc.stdout == "buffered output\nlater handler ran\n"
    assert "teardown ran" not in proc.stderr
    assert ("a reason" in proc.stderr) == ("reason" in how)


def test_an_uncaught_exception_ends_the_process_as_python_ends_it():
    proc = run("raise RuntimeError('boom')")
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr
    assert "teardown ran" in proc.stderr  # Python's own ending, teardown included
    assert proc.stdout == "buffered output\nlater handler ran\n"
