"""The rules of the malicious-package heuristics (static: nothing is ever run or imported).

Severities follow one ladder. Critical needs strong co-occurrence in one scope: decoded data
executed, credentials read and sent in one function, a download executed. High is one strong
signal (an install hook that reaches the network or runs a program, a ``.pth`` line that does
more than import a module). Medium and low are weak signals worth a look. Each rule's default
severity is its strongest; findings carry the severity of what was actually seen.
"""

from __future__ import annotations

from bastion.findings import Category, Reference, Severity
from bastion.rules import Rule


def _refs(*ids: str) -> tuple[Reference, ...]:
    """OWASP ML06 (supply chain), ATLAS AML.T0010 (ML supply chain compromise), plus ids."""
    return tuple(Reference.of(i) for i in ("ML06", "AML.T0010", *ids))


_REVIEW = ("Do not install the package (or remove it and rebuild the environment); read the "
           "evidence lines, and if the code is malicious rotate every credential the machine "
           "that installed it could read.")

INSTALL_HOOK = Rule(
    id="SUPPLY-INSTALL-HOOK",
    title="Package runs its own code at install time",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "setup.py replaces an install command (`cmdclass` for install, develop, egg_info, "
        "build_py...) or pyproject.toml points the build backend into the package itself "
        "(`backend-path`). That code runs with the installing user's rights on `pip install`. "
        "Low on its own (some projects need it); high when the hook reaches the network, "
        "starts programs or executes dynamic code."),
    remediation=_REVIEW,
    references=_refs("AML.T0011", "CWE-506"),
)
SETUP_SIDE_EFFECT = Rule(
    id="SUPPLY-SETUP-SIDE-EFFECT",
    title="setup.py does more than describe the package",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "Code that runs when setup.py is executed (module level, or functions it calls) "
        "contacts the network (high), starts a program that is not a build tool (medium) or "
        "writes files (low). Installing an sdist executes setup.py."),
    remediation=_REVIEW,
    references=_refs("AML.T0011", "CWE-506"),
)
EXFILTRATION = Rule(
    id="SUPPLY-CREDENTIAL-EXFILTRATION",
    title="Code reads credentials and sends data over the network",
    severity=Severity.CRITICAL,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "One scope reads environment variables wholesale or by secret-looking names, SSH or "
        "cloud credential files, browser cookie or password stores, keyrings or the cloud "
        "metadata service, and also sends data over the network (HTTP, sockets, SMTP, DNS "
        "look-ups of computed names). The 2022 `ctx` takeover sent `os.environ` to a remote "
        "server this way. Critical in one function, high when one function calls the other, "
        "low when they only share a module."),
    remediation=_REVIEW,
    references=_refs("CWE-200", "CWE-506"),
)
DOWNLOAD_EXECUTE = Rule(
    id="SUPPLY-DOWNLOAD-EXECUTE",
    title="Code downloads something and executes it",
    severity=Severity.CRITICAL,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "A scope fetches data over the network and executes code: `exec`/`eval` of the "
        "response, or writing a file and running it. A dropper: what runs is whatever the "
        "server sends that day, never what was reviewed."),
    remediation=_REVIEW,
    references=_refs("CWE-494", "CWE-506"),
)
OBFUSCATED_EXEC = Rule(
    id="SUPPLY-OBFUSCATED-EXEC",
    title="Code executes decoded or disguised data",
    severity=Severity.CRITICAL,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "`exec`, `eval`, `compile` or a deserializer runs data that was decoded first "
        "(base64, zlib, marshal, hex, rot13, chained), or a builtin is reached by a "
        "disguised name (`getattr(builtins, 'ex'+'ec')`, `__import__` of a computed name). "
        "Legitimate code has no reason to hide what it runs; stealers (W4SP and its kin) "
        "hide their payload exactly this way. Where the payload is a constant, Bastion "
        "decodes it (without running it) and shows what it does."),
    remediation=_REVIEW,
    references=_refs("CWE-506", "CWE-95"),
)
ENCODED_PAYLOAD = Rule(
    id="SUPPLY-ENCODED-PAYLOAD",
    title="Long encoded string in code",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "A very long base64 or hex string literal. Often data (an icon, a font); high when "
        "the same scope also executes dynamic code, the shape of an obfuscated payload."),
    remediation="Decode the string and check what it is.",
    references=_refs("CWE-506"),
)
HIDDEN_CODE = Rule(
    id="SUPPLY-HIDDEN-CODE",
    title="Code hidden past the edge of the screen",
    severity=Severity.MEDIUM,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "A line continues with code after a long run of spaces, so an editor or a diff "
        "shows only its harmless start: a trick of malicious setup.py files."),
    remediation=_REVIEW,
    references=_refs("CWE-506"),
)
IMPORT_TIME_NETWORK = Rule(
    id="SUPPLY-IMPORT-TIME-NETWORK",
    title="Module contacts the network when imported",
    severity=Severity.MEDIUM,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "Module-level code (run by `import`) makes network requests. Libraries rarely need "
        "to; malware uses it to phone home the first time the package is imported."),
    remediation="Check what is sent and where; prefer a release that does not do it.",
    references=_refs("AML.T0011"),
)
PTH_EXEC = Rule(
    id="SUPPLY-PTH-EXEC",
    title=".pth file executes code at every interpreter start",
    severity=Severity.CRITICAL,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "site.py executes every line of a `.pth` file that starts with `import`, each time "
        "any Python process starts in that environment: a persistence foothold that needs "
        "no import of the package. Importing a known module is informational; a line that "
        "does more (runs programs, decodes, executes, reaches the network) is high or "
        "critical."),
    remediation="Remove the .pth file and the package that installed it; review the line.",
    references=_refs("CWE-506"),
)
SDIST_BINARY = Rule(
    id="SUPPLY-SDIST-BINARY",
    title="Compiled binary shipped in a source distribution",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "An sdist should hold sources; this one ships a native executable or library (ELF, "
        "PE, Mach-O). No review of the sources covers it. High when the binary hides behind "
        "a name that is not a binary's (a `.txt` or `.png` holding an ELF)."),
    remediation="Build from reviewed sources; ask the project why the binary is there.",
    references=_refs("CWE-506"),
)
WHEEL_BINARY = Rule(
    id="SUPPLY-WHEEL-BINARY",
    title="Executable in an unexpected place of a wheel",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "Wheels may carry extension modules, but a native executable in the metadata folder, "
        "in the scripts folder, behind a non-binary name, or in a wheel that declares itself "
        "pure Python is out of place."),
    remediation="Check what the binary is and why the wheel installs it.",
    references=_refs("CWE-506"),
)
ENTRY_POINT_SHADOW = Rule(
    id="SUPPLY-ENTRY-POINT-SHADOW",
    title="Console script shadows a common command",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "The package installs a command named like a system or developer tool (`pip`, "
        "`python`, `ls`, `sudo`, `git`...). Whoever types that command in the environment "
        "runs the package's code instead."),
    remediation="Do not install the package; check which executable each command resolves to.",
    references=_refs("AML.T0011", "CWE-427"),
)
TYPOSQUAT = Rule(
    id="SUPPLY-TYPOSQUAT",
    title="Package name imitates a popular package",
    severity=Severity.HIGH,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "The name is a look-alike of one of the most-downloaded PyPI projects: swapped, "
        "doubled or missing characters, homoglyphs (`0`/`o`, `1`/`l`), separator games or "
        "prefixes and suffixes (`python-`, `-dev`). Typosquats are the commonest way "
        "malware reaches an install; a typo in a requirements file installs it every time."),
    remediation="Check the spelling against the intended project; use the popular name.",
    references=_refs("CWE-1357"),
)
NOT_ANALYSED = Rule(
    id="SUPPLY-PACKAGE-NOT-ANALYSED",
    title="Part of a package was not analysed",
    severity=Severity.LOW,
    category=Category.COVERAGE,
    description=(
        "A file of the package was too large, did not parse, or nested too deep for the "
        "static analysis, or a size, count or time limit stopped it; that part was not "
        "checked for malicious code."),
    remediation="Review the named file by hand.",
    references=(Reference.of("CWE-400"),),
)

RULES: tuple[Rule, ...] = (
    INSTALL_HOOK, SETUP_SIDE_EFFECT, EXFILTRATION, DOWNLOAD_EXECUTE, OBFUSCATED_EXEC,
    ENCODED_PAYLOAD, HIDDEN_CODE, IMPORT_TIME_NETWORK, PTH_EXEC, SDIST_BINARY, WHEEL_BINARY,
    ENTRY_POINT_SHADOW, TYPOSQUAT, NOT_ANALYSED,
)
