"""Benign packages written like real ones: look-alikes the heuristics must not call malicious.

Each is modelled on a real project's shape: a C extension with a custom ``build_ext`` and
``pkg-config`` (pybind11's example, many bindings), a numpy-style setup.py (git revision
through ``subprocess`` with a copied environment, a written ``version.py``, an ``sdist``
override), a click CLI with console scripts that checks for updates over HTTP, an HTTP
client library laid out like ``requests`` (``.netrc`` and proxy variables in ``utils``, the
connection in ``sessions``), a configuration library that reads the environment, and a
data package that embeds base64 icons.
"""

from __future__ import annotations

import base64
from pathlib import Path

from tests.supply.heuristics import packages

C_EXTENSION_SETUP = '''
    import os
    import subprocess
    import sys

    from setuptools import Extension, setup
    from setuptools.command.build_ext import build_ext

    HERE = os.path.abspath(os.path.dirname(__file__))


    def read(*parts):
        with open(os.path.join(HERE, *parts), encoding="utf-8") as handle:
            return handle.read()


    def pkg_config(flag, library):
        try:
            out = subprocess.check_output(["pkg-config", flag, library])
        except (OSError, subprocess.CalledProcessError):
            return []
        return out.decode().split()


    class BuildExt(build_ext):
        """Compiler flags per compiler type."""

        c_opts = {"msvc": ["/EHsc"], "unix": ["-O3", "-Wall"]}

        def build_extensions(self):
            opts = list(self.c_opts.get(self.compiler.compiler_type, []))
            if os.environ.get("FASTCRC_NATIVE"):
                opts.append("-march=native")
            if sys.platform == "darwin":
                opts.append("-mmacosx-version-min=10.9")
            for ext in self.extensions:
                ext.extra_compile_args = opts + pkg_config("--cflags", "zlib")
                ext.extra_link_args = pkg_config("--libs", "zlib")
            build_ext.build_extensions(self)


    about = {}
    exec(read("fastcrc", "__about__.py"), about)
    with open(os.path.join(HERE, "fastcrc", "_version.py")) as handle:
        exec(handle.read(), about)

    setup(
        name="fastcrc",
        version=about["__version__"],
        long_description=read("README.rst"),
        ext_modules=[Extension("fastcrc._crc", ["src/crc.c"], include_dirs=["src"])],
        cmdclass={"build_ext": BuildExt},
        packages=["fastcrc"],
        python_requires=">=3.9",
    )
'''

NUMPY_STYLE_SETUP = '''
    import os
    import subprocess
    import sys
    import textwrap

    from setuptools import setup
    from setuptools.command.sdist import sdist

    MAJOR, MINOR, MICRO = 1, 26, 0
    VERSION = f"{MAJOR}.{MINOR}.{MICRO}"


    def git_version():
        def _minimal_ext_cmd(cmd):
            env = {}
            for k in ["SYSTEMROOT", "PATH", "HOME"]:
                v = os.environ.get(k)
                if v is not None:
                    env[k] = v
            env["LANGUAGE"] = "C"
            env["LANG"] = "C"
            return subprocess.check_output(cmd, stderr=subprocess.STDOUT, env=env)

        try:
            out = _minimal_ext_cmd(["git", "rev-parse", "HEAD"])
            return out.strip().decode("ascii")
        except (subprocess.SubprocessError, OSError):
            return "Unknown"


    def write_version_py(filename="numlite/version.py"):
        content = textwrap.dedent("""
            version = '%(version)s'
            git_revision = '%(git_revision)s'
        """)
        with open(filename, "w") as handle:
            handle.write(content % {"version": VERSION, "git_revision": git_version()})


    class sdist_checked(sdist):
        """Check git submodules exist before making an sdist."""

        def run(self):
            if not os.path.exists(".git"):
                print("not a git checkout")
            sdist.run(self)


    def setup_package():
        src_path = os.path.dirname(os.path.abspath(__file__))
        old_path = os.getcwd()
        os.chdir(src_path)
        sys.path.insert(0, src_path)
        write_version_py()
        metadata = dict(
            name="numlite",
            version=VERSION,
            cmdclass={"sdist": sdist_checked},
            packages=["numlite"],
        )
        try:
            setup(**metadata)
        finally:
            del sys.path[0]
            os.chdir(old_path)


    if __name__ == "__main__":
        setup_package()
'''

CLI_MAIN = '''
    """clitool: a command line tool with an update check."""
    import json
    import os
    import subprocess
    import sys
    import urllib.request

    import click

    CONFIG = os.path.join(os.environ.get("CLITOOL_HOME", os.path.expanduser("~")), ".clitool")
    PYPI = "https://pypi.org/pypi/clitool/json"


    def latest_version(timeout=2.0):
        with urllib.request.urlopen(PYPI, timeout=timeout) as response:
            return json.load(response)["info"]["version"]


    def git_branch():
        return subprocess.run(["git", "branch", "--show-current"], capture_output=True,
                              text=True, check=False).stdout.strip()


    @click.command()
    @click.option("--check", is_flag=True)
    def main(check):
        if check:
            click.echo(f"latest: {latest_version()}")
        click.echo(f"on branch {git_branch()}; config in {CONFIG}")
        if os.environ.get("CLITOOL_DEBUG"):
            click.echo(json.dumps(sys.argv))
'''

HTTP_UTILS = '''
    """Utilities: proxies from the environment and .netrc authentication (as requests does)."""
    import os
    from urllib.parse import urlparse

    NETRC_FILES = (".netrc", "_netrc")


    def get_netrc_auth(url):
        netrc_file = os.environ.get("NETRC")
        locations = (netrc_file,) if netrc_file else (f"~/{f}" for f in NETRC_FILES)
        from netrc import NetrcParseError, netrc

        for location in locations:
            path = os.path.expanduser(location)
            if os.path.exists(path):
                try:
                    auth = netrc(path).authenticators(urlparse(url).hostname)
                except (NetrcParseError, OSError):
                    return None
                if auth:
                    return (auth[0], auth[2])
        return None


    def get_environ_proxies(url):
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
        host = urlparse(url).hostname or ""
        if no_proxy and any(host.endswith(h.strip()) for h in no_proxy.split(",")):
            return {}
        return {k.lower(): v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
'''

HTTP_SESSIONS = '''
    """Sessions: connection pooling over http.client (the network half of the library)."""
    import http.client
    import os
    from urllib.parse import urlparse

    from .auth import basic_auth_header
    from .utils import get_environ_proxies, get_netrc_auth


    class Session:
        def __init__(self):
            self.headers = {"User-Agent": "httplite/1.0"}
            self.trust_env = True

        def merge_environment_settings(self, url, verify):
            if self.trust_env and verify is True:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            return {"verify": verify, "proxies": get_environ_proxies(url)}

        def request(self, method, url, body=None, auth=None):
            parts = urlparse(url)
            headers = dict(self.headers)
            auth = auth or (get_netrc_auth(url) if self.trust_env else None)
            if auth:
                headers["Authorization"] = basic_auth_header(*auth)
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=10)
            conn.request(method, parts.path or "/", body=body, headers=headers)
            return conn.getresponse()

        def get(self, url, **kwargs):
            return self.request("GET", url, **kwargs)
'''

HTTP_AUTH = '''
    import base64


    def basic_auth_header(username, password):
        token = base64.b64encode(f"{username}:{password}".encode("latin1")).strip()
        return "Basic " + token.decode("ascii")
'''

CONFIG_LIB = '''
    """envconf: twelve-factor configuration from environment variables."""
    import json
    import os

    SECRET_KEY = os.environ.get("APP_SECRET_KEY", "")
    DATABASE_URL = os.getenv("DATABASE_URL", "sqlite://")


    def load(prefix="APP_"):
        return {k[len(prefix):].lower(): v for k, v in os.environ.items()
                if k.startswith(prefix)}


    def dump(path, prefix="APP_"):
        with open(path, "w") as handle:
            json.dump(load(prefix), handle, indent=2)


    def plugin(name):
        return __import__(f"envconf_{name}")
'''


def icons_module() -> str:
    png = bytes(range(256)) * 8
    return f'''
    import base64

    LOGO_PNG = "{base64.b64encode(png).decode()}"


    def logo():
        return base64.b64decode(LOGO_PNG)
    '''


DISTUTILS_PRECEDENCE = ("import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get("
                        "var, 'local') == 'local'; enabled and __import__('_distutils_hack')."
                        "add_shim(); \n")


def build_corpus(folder: Path) -> list[Path]:
    """Every benign package, as sdists and wheels in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        packages.sdist(folder, "fastcrc", "2.1.0", {
            "setup.py": C_EXTENSION_SETUP,
            "fastcrc/__init__.py": "from ._crc import crc32\n",
            "fastcrc/__about__.py": "__version__ = '2.1.0'\n",
            "fastcrc/_version.py": "__version__ = '2.1.0'\n",
            "src/crc.c": "int crc32(void) { return 0; }\n",
            "README.rst": "fastcrc\n=======\n",
        }),
        packages.sdist(folder, "numlite", "1.26.0", {
            "setup.py": NUMPY_STYLE_SETUP,
            "numlite/__init__.py": "from .version import version as __version__\n",
        }, fmt="zip"),
        packages.wheel(folder, "clitool", "0.4.0", {"clitool/__init__.py": "", "clitool/cli.py":
                       CLI_MAIN}, entry_points="[console_scripts]\nclitool = clitool.cli:main\n"),
        packages.sdist(folder, "clitool", "0.4.0", {
            "pyproject.toml": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = '
                              '"hatchling.build"\n\n[project]\nname = "clitool"\nversion = '
                              '"0.4.0"\n\n[project.scripts]\nclitool = "clitool.cli:main"\n',
            "clitool/__init__.py": "", "clitool/cli.py": CLI_MAIN,
        }),
        packages.wheel(folder, "httplite", "1.0.0", {
            "httplite/__init__.py": "from .sessions import Session\n",
            "httplite/utils.py": HTTP_UTILS, "httplite/sessions.py": HTTP_SESSIONS,
            "httplite/auth.py": HTTP_AUTH}),
        packages.wheel(folder, "envconf", "3.0.0", {"envconf/__init__.py": CONFIG_LIB}),
        packages.wheel(folder, "iconpack", "1.0.0", {"iconpack/__init__.py": icons_module(),
                                                     "iconpack-precedence.pth":
                                                     DISTUTILS_PRECEDENCE}),
    ]
