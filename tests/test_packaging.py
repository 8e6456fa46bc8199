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


def _run(*command: str, cwd: str | None = None, **environment: str) -> str:
    # Not PYTHONPATH (trial -j sets it to the checkout for its workers), nor
    # a switch that turns off the extension the test looks for.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JSONPROTO_NO_SPEEDUPS")}
    env.update(environment)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _cleanCopy(work: str) -> str:
    """
    The checkout's files, without what a build or a run leaves behind (a
    build/ left in the checkout would leak into a wheel).
    """
    source = os.path.join(work, "source")
    shutil.copytree(
        REPO, source,
        ignore=shutil.ignore_patterns(".venv*", ".git", "build", "dist", "_trial_temp*", "*.egg-info", "*.so", "__pycache__", "_build"),
    )
    return source


def compilerAtHand() -> bool:
    """
    Whether C extensions can be built here: the compiler (C{CC}, or the one
    this Python was built with) compiles a file that includes Python.h.
    """
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    try:
        result = subprocess.run(
            [*compiler, "-I", sysconfig.get_paths()["include"], "-x", "c", "-c", "-", "-o", os.devnull],
            input="#include <Python.h>\nint jsonprotoProbe(void) { return 0; }\n",
            capture_output=True, text=True, timeout=60,
        )
    except OSError:
        return False
    return result.returncode == 0


def _twistedBefore(year: int, month: int) -> bool:
    import twisted

    return tuple(int(part) for part in twisted.__version__.split(".")[:2]) < (year, month)


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
        os.makedirs(work)
        venv, python = self.installWheel(work)
        twistd = "from twisted.scripts.twistd import run; run()"
        listing = _run(python, "-c", twistd, "--help", cwd=work)
        self.assertIn("jsonproto", listing)
        options = _run(python, "-c", twistd, "jsonproto", "--help", cwd=work)
        for option in ["--port=", "--framing=", "--echo=", "--idle-timeout=", "--max-connections=", "--max-message-size=", "--handlers="]:
            self.assertIn(option, options)
        where = _run(python, "-c", "import jsonproto; print(jsonproto.__file__)", cwd=work)
        self.assertTrue(where.startswith(venv), where)
        # The wheel carries the C fast path, built from its source, where a
        # compiler is at hand; without one, the build goes on without it.
        implementation = _run(python, "-c", "from jsonproto.core import compiled; print(compiled.implementation())", cwd=work)
        self.assertEqual(implementation.strip(), "compiled" if compilerAtHand() else "python")
        # The type hints are for users too (PEP 561), and the licence goes along.
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(where.strip()), "py.typed")))
        self.assertTrue(glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "jsonproto-*.dist-info", "**", "LICENSE"), recursive=True))
        self.assertIn("jsonproto-tls", _run(python, "-c", "from twisted.plugin import getPlugins; from twisted.internet.interfaces import IStreamServerEndpointStringParser as I; print([p.prefix for p in getPlugins(I)])", cwd=work))
        self.assertIn("send", _run(os.path.join(venv, "bin", "jsonproto"), "--help", cwd=work))
        import jsonproto

        self.assertEqual(_run(os.path.join(venv, "bin", "jsonproto"), "--version", cwd=work), f"jsonproto {jsonproto.__version__}\n")

    def installWheel(self, work: str, **environment: str) -> tuple[str, str]:
        """
        Build a wheel from a clean copy of the checkout (with
        C{environment} set: C{CC=false} for a machine without a compiler)
        and install it in a new virtualenv.

        @return: The virtualenv and its python.
        """
        source = _cleanCopy(work)
        # No build isolation: the build uses this environment's setuptools
        # instead of downloading one.
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", work, source, **environment)
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
        return venv, python

    def test_wheelWithoutCompiler(self) -> None:
        """
        Where no C compiler works (CC=false), the wheel still builds and
        installs, and answers with the Python fast path.
        """
        try:
            import setuptools  # noqa: F401
        except ImportError:
            raise SkipTest("building the wheel needs setuptools in this environment")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        venv, python = self.installWheel(work, CC="false")
        implementation = _run(python, "-c", "from jsonproto.core import compiled; print(compiled.implementation())", cwd=work)
        self.assertEqual(implementation.strip(), "python")
        twistd = "from twisted.scripts.twistd import run; run()"
        self.assertIn("--port=", _run(python, "-c", twistd, "jsonproto", "--help", cwd=work))


class SourceDistributionTests(SynchronousTestCase):
    def test_testsRunFromSdist(self) -> None:
        """
        The sdist carries the tests with their support and handler modules,
        the manual and the licence: unpacked, `python -m twisted.trial
        tests` finds and imports every test module, and runs them.
        """
        import tarfile

        try:
            import setuptools  # noqa: F401
        except ImportError:
            raise SkipTest("building the sdist needs setuptools in this environment")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        source = _cleanCopy(work)
        built = _run(
            sys.executable, "-c",
            "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))", work, cwd=source,
        ).strip().splitlines()[-1]
        with tarfile.open(os.path.join(work, built)) as archive:
            archive.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else archive.extractall(work)
        unpacked = os.path.join(work, built[: -len(".tar.gz")])
        for path in [
            "LICENSE", "README.md", "jsonproto/py.typed", "jsonproto/core/pipeline.pxd",
            "jsonproto/core/output.pxd", "jsonproto/core/rpcpipeline.pxd",
            "tests/__init__.py", "tests/support.py", "tests/e2e.py",
            "tests/samplehandlers.py", "tests/slowhandlers.py", "tests/peerhandlers.py",
            "docs/operations.md", "docs/conf.py",
        ]:
            self.assertTrue(os.path.exists(os.path.join(unpacked, path)), path)
        self.assertEqual(
            sorted(os.path.basename(p) for p in glob.glob(os.path.join(unpacked, "tests", "test_*.py"))),
            sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "tests", "test_*.py"))),
        )
        trial: tuple[str, ...] = (sys.executable, "-m", "twisted.trial")
        if _twistedBefore(23, 8):  # its "-m twisted.trial" needs pkg_resources
            trial = (sys.executable, "-c", "import sys; sys.argv[0] = 'trial'; from twisted.scripts.trial import run; run()")
        # Every test module imports from the unpacked tree...
        listing = _run(*trial, "--dry-run", "tests", cwd=unpacked)
        self.assertNotIn("[ERROR]", listing)
        # ...and a sample of them runs there, the daemon's tests included.
        result = _run(*trial, "tests.test_compat", "tests.test_codec", "tests.test_tap.HandlersTests", cwd=unpacked)
        self.assertIn("PASSED", result)


class SourceTests(SynchronousTestCase):
    def test_noEscapeWarnings(self) -> None:
        """
        No module, test or tool has an invalid escape in a string (a
        SyntaxWarning on Python 3.12 and later, a DeprecationWarning
        before).
        """
        import warnings

        for directory in ("jsonproto", "tests", "bench", "twisted", "docs"):
            for path in glob.glob(os.path.join(REPO, directory, "**", "*.py"), recursive=True):
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                with warnings.catch_warnings():
                    warnings.simplefilter("error", SyntaxWarning)
                    warnings.simplefilter("error", DeprecationWarning)
                    try:
                        compile(text, path, "exec")
                    except SyntaxError as e:
                        self.fail(f"{path}: {e}")


class PackageListTests(SynchronousTestCase):
    def test_everyPackageListed(self) -> None:
        """
        Every package of the source tree is in setup.cfg's list (which is
        written out by hand, for twisted.plugins' sake): a package left out
        would be missing from every install.
        """
        import configparser

        config = configparser.ConfigParser()
        config.read(os.path.join(REPO, "setup.cfg"))
        listed = set(config["options"]["packages"].split())
        found = {
            os.path.relpath(directory, REPO).replace(os.sep, ".")
            for directory, _, files in os.walk(os.path.join(REPO, "jsonproto"))
            if "__init__.py" in files
        }
        self.assertEqual(found - listed, set())
