"""
The package as a user installs it: a wheel in a fresh virtualenv, where
twistd must find the jsonproto plugin without the checkout's help.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.e2e import REPO

TIMEOUT = 300


def _run(*command: str, cwd: str | None = None) -> str:
    # Not PYTHONPATH (trial -j sets it to the checkout for its workers), nor
    # a switch that turns off the extension the test looks for.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JSONPROTO_NO_SPEEDUPS")}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


class WheelTests(SynchronousTestCase):
    def test_pluginFromWheel(self) -> None:
        """
        A wheel built from the checkout carries the plugins: installed in a
        new virtualenv, `twistd --help` lists jsonproto, `twistd jsonproto
        --help` shows its options, the jsonproto-tls: endpoint is found,
        and the jsonproto command runs, all from that virtualenv, not from
        the checkout.
        """
        try:
            import setuptools  # noqa: F401
        except ImportError:
            raise SkipTest("building the wheel needs setuptools in this environment")
        work = os.path.abspath(self.mktemp())
        # A clean copy: a build/ left in the checkout would leak into the wheel.
        source = os.path.join(work, "source")
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "_trial_temp*", "*.egg-info"))
        # No build isolation: the build uses this environment's setuptools
        # instead of downloading one.
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", work, source)
        [wheel] = glob.glob(os.path.join(work, "jsonproto-*.whl"))
        venv = os.path.join(work, "venv")
        _run(sys.executable, "-m", "venv", venv)
        python = os.path.join(venv, "bin", "python")
        _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
        # Twisted and the rest come from this environment, added as a plain
        # path: its .pth files (which would add the checkout) are not read.
        purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
        with open(os.path.join(purelib, "dependencies.pth"), "w") as f:
            f.write(sysconfig.get_path("purelib") + "\n")
        twistd = "from twisted.scripts.twistd import run; run()"
        listing = _run(python, "-c", twistd, "--help", cwd=work)
        self.assertIn("jsonproto", listing)
        options = _run(python, "-c", twistd, "jsonproto", "--help", cwd=work)
        for option in ["--port=", "--framing=", "--echo=", "--idle-timeout=", "--max-connections=", "--max-message-size=", "--handlers="]:
            self.assertIn(option, options)
        where = _run(python, "-c", "import jsonproto; print(jsonproto.__file__)", cwd=work)
        self.assertTrue(where.startswith(venv), where)
        # The wheel carries the compiled core, built from its source.
        implementation = _run(python, "-c", "from jsonproto.core import compiled; print(compiled.implementation())", cwd=work)
        self.assertEqual(implementation.strip(), "compiled")
        self.assertIn("jsonproto-tls", _run(python, "-c", "from twisted.plugin import getPlugins; from twisted.internet.interfaces import IStreamServerEndpointStringParser as I; print([p.prefix for p in getPlugins(I)])", cwd=work))
        self.assertIn("send", _run(os.path.join(venv, "bin", "jsonproto"), "--help", cwd=work))
