"""What the static analysis looks for: names of APIs, credential locations, build tools.

Calls are matched by their *resolved* qualified name (``requests.post``, ``os.system``,
``socket.socket().connect``), after import aliases are followed, so ``from requests import
post as p; p(...)`` is a network call and ``self.session.post(...)`` (an unknown receiver)
is not. A call of a method on a value whose constructor is known resolves through ``()``:
``s = requests.Session(); s.post(...)`` is ``requests.Session().post``.
"""

from __future__ import annotations

import re

_HTTP_VERBS = ("get", "post", "put", "patch", "delete", "head", "options", "request", "send",
               "stream", "urlopen", "open")

#: Calls that contact the network (fetch or send): exact qualified names.
NETWORK_CALLS = frozenset({
    "urllib.request.urlopen", "urllib.request.urlretrieve", "urllib.urlopen",
    "urllib.urlretrieve", "urllib2.urlopen", "urllib.request.build_opener().open",
    "urllib.request.OpenerDirector().open", "urllib.request.FancyURLopener().open",
    "http.client.HTTPConnection", "http.client.HTTPSConnection", "httplib.HTTPConnection",
    "httplib.HTTPSConnection", "socket.create_connection", "smtplib.SMTP", "smtplib.SMTP_SSL",
    "ftplib.FTP", "ftplib.FTP_TLS", "telnetlib.Telnet", "poplib.POP3", "imaplib.IMAP4",
    "imaplib.IMAP4_SSL", "urllib3.request", "wget.download", "websocket.create_connection",
    "websockets.connect", "aiohttp.request", "pycurl.Curl().perform", "xmlrpc.client.ServerProxy",
    "paramiko.SSHClient().connect", "requests.Session().send",
    *(f"{mod}.{verb}" for mod in ("requests", "requests.api", "httpx") for verb in _HTTP_VERBS),
    *(f"{cls}().{verb}" for cls in ("requests.Session", "requests.session", "httpx.Client",
                                     "httpx.AsyncClient", "aiohttp.ClientSession",
                                     "urllib3.PoolManager", "urllib3.ProxyManager",
                                     "http.client.HTTPConnection", "http.client.HTTPSConnection")
      for verb in _HTTP_VERBS),
    *(f"socket.socket().{verb}" for verb in ("connect", "connect_ex", "send", "sendall",
                                             "sendto", "recv")),
    *(f"smtplib.{cls}().{verb}" for cls in ("SMTP", "SMTP_SSL")
      for verb in ("sendmail", "send_message", "login")),
})
#: Name resolutions: a computed host name resolved is a DNS exfiltration channel.
DNS_CALLS = frozenset({
    "socket.gethostbyname", "socket.gethostbyname_ex", "socket.getaddrinfo",
    "dns.resolver.resolve", "dns.resolver.query", "dns.resolver.Resolver().resolve",
    "dns.resolver.Resolver().query",
})
#: exec-like builtins and deserializers: running data as code.
EXEC_CALLS = frozenset({
    "builtins.exec", "builtins.eval", "builtins.compile", "builtins.execfile",
    "pickle.loads", "_pickle.loads", "cPickle.loads", "dill.loads", "cloudpickle.loads",
    "marshal.loads", "types.FunctionType", "types.CodeType",
})
#: Running a program.
SHELL_CALLS = frozenset({
    *(f"subprocess.{f}" for f in ("run", "call", "check_call", "check_output", "Popen",
                                  "getoutput", "getstatusoutput")),
    *(f"os.{f}" for f in ("system", "popen", "execv", "execve", "execl", "execle", "execlp",
                          "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
                          "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
                          "posix_spawnp", "startfile")),
    "pty.spawn", "commands.getoutput", "commands.getstatusoutput", "platform.popen",
    "asyncio.create_subprocess_shell", "asyncio.create_subprocess_exec",
})
#: Decoders: data that goes through one of these before ``exec`` was hidden on purpose.
DECODE_CALLS = frozenset({
    *(f"base64.{f}" for f in ("b64decode", "standard_b64decode", "urlsafe_b64decode",
                              "b32decode", "b32hexdecode", "b16decode", "a85decode",
                              "b85decode", "decodebytes", "decodestring", "z85decode")),
    "binascii.unhexlify", "binascii.a2b_hex", "binascii.a2b_base64", "binascii.a2b_uu",
    "zlib.decompress", "gzip.decompress", "bz2.decompress", "lzma.decompress",
    "marshal.loads", "codecs.decode", "bytes.fromhex", "bytearray.fromhex",
    "cryptography.fernet.Fernet().decrypt", "pickle.loads", "zlib.decompressobj().decompress",
})
#: Method names that decode whatever their receiver is (``Fernet(k).decrypt``, ``.decode``
#: with a codec such as ``rot13``).
DECODE_METHODS = frozenset({"decrypt", "decompress", "fromhex", "b64decode", "unhexlify"})
CODEC_NAMES = frozenset({"rot13", "rot_13", "hex", "hex_codec", "base64", "base_64",
                         "base64_codec", "zlib", "zip", "zlib_codec", "bz2", "bz2_codec",
                         "uu", "uu_codec", "quopri"})
FILE_WRITE_CALLS = frozenset({
    "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.move", "shutil.copyfileobj",
    "os.write", "urllib.request.urlretrieve",
})
FILE_WRITE_METHODS = frozenset({"write_text", "write_bytes"})
CHMOD_CALLS = frozenset({"os.chmod", "os.fchmod", "os.lchmod"})
#: Reading secrets from a store rather than a file or the environment.
CREDENTIAL_STORE_CALLS = frozenset({
    "keyring.get_password", "keyring.get_credential", "win32crypt.CryptUnprotectData",
    "secretstorage.dbus_init", "browser_cookie3.load", "browser_cookie3.chrome",
    "browser_cookie3.firefox", "browsercookie.load", "browsercookie.chrome",
    "browsercookie.firefox",
})
#: Dynamic imports of a computed name.
IMPORT_CALLS = frozenset({"builtins.__import__"})
#: What a builtin reached by a disguised name is worth reporting for.
DANGEROUS_BUILTINS = frozenset({"exec", "eval", "compile", "__import__", "execfile"})

#: Programs a build legitimately runs from setup.py (with constant arguments).
BUILD_TOOLS = frozenset({
    "git", "hg", "svn", "cmake", "make", "gmake", "nmake", "ninja", "meson", "gcc", "g++", "cc",
    "c++", "clang", "clang++", "cl", "cl.exe", "nvcc", "hipcc", "icc", "icpc", "gfortran",
    "pkg-config", "pkgconf", "cython", "swig", "ld", "ar", "nm", "strip", "otool",
    "install_name_tool", "patchelf", "xcrun", "xcode-select", "sw_vers", "uname", "ldconfig",
    "lsb_release", "nproc", "sysctl", "which", "where", "rustc", "cargo", "go", "protoc",
    "flex", "bison", "autoreconf", "autoconf", "automake", "./configure", "configure",
    "python", "python3", "lscpu", "nvidia-smi", "mpicc", "llvm-config", "hipconfig",
    "rocm-smi", "ccache", "sccache", "bazel", "npm", "yarn", "pnpm", "node", "maturin",
    "gsl-config", "pg_config", "mysql_config", "icu-config", "freetype-config",
})
#: Programs that fetch from the network when run.
DOWNLOADERS = frozenset({"curl", "wget", "powershell", "powershell.exe", "pwsh", "bitsadmin",
                         "certutil", "iwr", "invoke-webrequest", "nc", "ncat", "netcat",
                         "scp", "ftp", "tftp"})
_PIPE_TO_SHELL = re.compile(r"\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b|chmod\s+\+?[0-7]*x|&&\s*\./|"
                            r"\|\s*python|iex\b|invoke-expression", re.IGNORECASE)

#: Environment variable names that hold secrets.
SECRET_ENV = re.compile(
    r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|(?:^|_)AUTH(?:_|$)|"
    r"COOKIE|SESSION_?ID|DATABASE_URL|_DSN$|WEBHOOK", re.IGNORECASE)
#: What an environment variable's name looks like.
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{2,63}")
#: Secret names that, read together in one place, mean harvesting rather than configuration.
HARVEST_COUNT = 3

#: Credential files and stores, by a piece of their path (checked in string constants).
CREDENTIAL_PATHS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), what) for p, what in (
        (r"\.ssh(?:[/\\]|$)|id_rsa|id_ed25519|id_ecdsa|id_dsa\b", "SSH keys"),
        (r"\.aws[/\\]credentials|\.aws[/\\]config|\.aws$", "AWS credentials"),
        (r"(?:^|[/\\~])[._]netrc\b", ".netrc passwords"),
        (r"\.pypirc\b", "PyPI upload credentials"),
        (r"\.git-credentials\b", "git credentials"),
        (r"\.docker[/\\]config\.json", "Docker registry credentials"),
        (r"\.kube[/\\]config", "Kubernetes credentials"),
        (r"\.config[/\\]gcloud|application_default_credentials\.json", "Google Cloud credentials"),
        (r"\.azure[/\\]", "Azure credentials"),
        (r"\.gnupg\b", "GnuPG keys"),
        (r"\bLogin Data\b|\bWeb Data\b|\bLocal State\b|cookies\.sqlite|logins\.json|key[34]\.db",
         "browser passwords and cookies"),
        (r"[/\\]Cookies$|Network[/\\]Cookies", "browser cookies"),
        (r"Local Storage[/\\]leveldb|discord(?:canary|ptb)?[/\\]", "Discord tokens"),
        (r"wallet\.dat|Exodus|Electrum|Atomic[/\\]Local Storage|MetaMask|"
         r"nkbihfbeogaeaoehlefnkodbefgpgknn", "cryptocurrency wallets"),
        (r"/etc/shadow\b", "system password hashes"),
        (r"/proc/self/environ|/proc/\d+/environ", "process environment"),
        (r"\.bash_history|\.zsh_history", "shell history"),
        (r"\.npmrc\b|\.yarnrc\b", "npm tokens"),
        (r"\.huggingface[/\\]token|\.cache[/\\]huggingface[/\\]token", "Hugging Face token"),
    ))
#: Any of the credential paths: one search rejects most strings before the per-path ones.
CREDENTIAL_ANY = re.compile("|".join(f"(?:{p.pattern})" for p, _ in CREDENTIAL_PATHS),
                            re.IGNORECASE)
#: Cloud instance metadata services (credentials of the machine's role).
METADATA_HOSTS = re.compile(r"169\.254\.169\.254|metadata\.google\.internal|100\.100\.100\.200|"
                            r"fd00:ec2::254|169\.254\.170\.2")
#: Endpoints used to receive stolen data.
EXFIL_ENDPOINTS = re.compile(
    r"discord(?:app)?\.com/api/webhooks|api\.telegram\.org/bot|hooks\.slack\.com/services|"
    r"pastebin\.com/api|transfer\.sh|ngrok\.io|ngrok-free\.app|requestbin|pipedream\.net|"
    r"webhook\.site|interact\.sh|oast\.(?:fun|me|pro|site|live|online)|burpcollaborator|"
    r"canarytokens", re.IGNORECASE)
#: A Discord token's shape (stealers search for it).
DISCORD_TOKEN = re.compile(r"\[\\w-\]\{24\}|mfa\\\.\[\\w-\]\{84\}|dQw4w9WgXcQ")

#: Long encoded literals.
BLOB_LENGTH = 1_000
BASE64_BLOB = re.compile(r"[A-Za-z0-9+/_\-\s]+=*")
HEX_BLOB = re.compile(r"(?:\\x)?[0-9a-fA-F\s]+")
#: Code after a long run of blanks: hidden past the screen's edge.
HIDDEN_CODE = re.compile(r"\S[ \t]{120,}(?=\S)(.{0,200})")
_CODE_WORDS = re.compile(r"\b(?:import|exec|eval|compile|__import__|os\.|subprocess|base64)\b|"
                         r"[;(]")


def pipes_to_shell(command: str) -> bool:
    """A shell command that runs what it downloads (``curl … | sh``, ``chmod +x && ./x``)."""
    return bool(_PIPE_TO_SHELL.search(command))


def looks_like_code(text: str) -> bool:
    return bool(_CODE_WORDS.search(text))


#: Console-script names that shadow common commands, and the projects allowed to own them.
SHADOWED_COMMANDS: dict[str, frozenset[str]] = {
    **{name: frozenset({"pip"}) for name in ("pip", "pip3")},
    **{name: frozenset() for name in (
        "python", "python3", "python2", "py", "ls", "sudo", "su", "git", "ssh", "scp", "sftp",
        "curl", "wget", "bash", "sh", "zsh", "fish", "cd", "cp", "mv", "rm", "cat", "echo",
        "apt", "apt-get", "yum", "dnf", "brew", "npm", "npx", "node", "docker", "kubectl",
        "which", "env", "chmod", "chown", "ps", "kill", "top", "make", "gcc", "openssl",
        "gpg", "java", "go", "cargo", "rustc", "ruby", "perl", "php", "vim", "vi", "nano",
        "less", "more", "grep", "find", "tar", "unzip", "systemctl", "service", "crontab",
        "passwd", "login", "mount", "nc", "ping", "ifconfig", "ip", "ssh-keygen", "ssh-agent",
        "whoami", "id", "sh.exe", "cmd", "cmd.exe", "powershell", "explorer", "svchost")},
    "aws": frozenset({"awscli"}), "az": frozenset({"azure-cli"}),
    "conda": frozenset({"conda"}), "twine": frozenset({"twine"}),
    "virtualenv": frozenset({"virtualenv"}), "pytest": frozenset({"pytest"}),
    "gcloud": frozenset(), "uv": frozenset({"uv"}), "poetry": frozenset({"poetry"}),
}
_VERSIONED = re.compile(r"^(pip|python)\d+(?:\.\d+)?$")


def shadowed(command: str, package: str | None) -> bool:
    """Whether a console script named ``command`` shadows a common command."""
    name = command.strip().lower()
    match = _VERSIONED.match(name)
    key = match.group(1) if match else name
    if key == "python" and match:
        key = "python3"
    owners = SHADOWED_COMMANDS.get(key)
    if owners is None:
        return False
    return package is None or package not in owners
