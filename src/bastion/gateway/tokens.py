"""OIDC/JWT bearer tokens, validated against the issuer's JSON Web Key Set.

A token is accepted only when every one of these holds, checked in this order (the first
failure names the reason, a short word for the audit log and metrics):

1. it is a compact JWS of bounded size with a parseable header (``malformed``);
2. its ``alg`` is on the allow-list, which may hold asymmetric algorithms only: ``none`` and
   the HMAC family are refused outright, so a token "signed" with the issuer's public key as
   an HMAC secret (RS/HS key confusion) can never verify (``bad_algorithm``);
3. its key is found in the JWKS: by ``kid``, or the JWKS's only key when the token has no
   ``kid``; the algorithm must fit the key (family and curve, and the key's own ``alg`` when it
   declares one) (``unknown_key``, ``bad_algorithm``);
4. the signature verifies (``bad_signature``);
5. ``exp``, ``iss`` and ``aud`` are present and right, ``nbf``/``iat`` are honoured, all with
   a small leeway (``expired``, ``not_yet_valid``, ``bad_issuer``, ``bad_audience``).

Claims become a :class:`~bastion.gateway.principals.Principal`: the name is
``<principal_prefix><sub>`` (``oidc:alice`` by default — the prefix keeps a token subject from
ever being mistaken for an API-key principal of the same name; grant to ``user:oidc:alice``),
the groups come from a configurable claim (a list, or a space-separated string as some IdPs
send; a dotted path reaches nested claims such as ``realm_access.roles``), bounded in count
and length. Header fields that point elsewhere for keys (``jku``, ``x5u``, ``jwk``) are
ignored: keys come only from the configured JWKS.

The JWKS is a file (re-read when its size, mtime or inode change) or an http(s) URL (https
unless the host is the loopback), fetched with a hard time limit and a size bound, cached for
``cache_ttl`` seconds, and fetched again at most once per ``refetch_interval`` when a token
names a key it does not know (key rotation). When a refresh fails, the keys fetched last
keep serving for at most ``max_stale`` seconds, so a short IdP outage does not stop the
gateway; after that, tokens are refused with ``jwks_unavailable``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.api_jwk import PyJWK

from bastion.gateway.errors import AuthError
from bastion.gateway.principals import Principal

log = logging.getLogger("bastion.gateway")

#: The algorithms a JWKS key may verify. HMAC (``HS*``) and ``none`` are absent on purpose.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "ES256K", "EdDSA"})

#: Which key type (and curve) each algorithm needs.
_FAMILY: dict[str, tuple[str, frozenset[str] | None]] = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), ("RSA", None)),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "ES256K": ("EC", frozenset({"secp256k1"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 100
MIN_RSA_BITS = 2048
MAX_NAME_CHARS = 256
MAX_GROUPS = 256
MAX_GROUP_CHARS = 256


class JWKSError(Exception):
    """The key set cannot be fetched, read or used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class _KeySet:
    """Verification keys by ``kid`` (``None`` for a key without one), then by algorithm."""

    keys: Mapping[str | None, Mapping[str, PyJWK]]
    loaded: float  # time.monotonic() of the fetch

    @property
    def count(self) -> int:
        return len(self.keys)


def parse_jwks(data: bytes, algorithms: Iterable[str]) -> dict[str | None, dict[str, PyJWK]]:
    """The usable verification keys of a JWKS document, for the allowed algorithms.

    Keys that are symmetric (``oct``), meant for encryption, too weak (RSA under 2048 bits)
    or unsupported are left out, with a log line; a set with no usable key at all is an error.
    """
    if len(data) > MAX_JWKS_BYTES:
        raise JWKSError(f"the JWKS is over {MAX_JWKS_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise JWKSError("the JWKS is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JWKSError('the JWKS is not a JSON object with a "keys" list')
    entries: list[Any] = doc["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        raise JWKSError(f"the JWKS has {len(entries)} keys (limit {MAX_JWKS_KEYS})")
    allowed = frozenset(algorithms)
    keys: dict[str | None, dict[str, PyJWK]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        where = f"JWKS key {index}" + (f" (kid {kid!r:.80})" if kid is not None else "")
        if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > 256):
            log.warning("%s: ignored, kid is not a short string", where)
            continue
        if entry.get("use", "sig") != "sig":
            continue
        ops = entry.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        kty, crv, declared = entry.get("kty"), entry.get("crv"), entry.get("alg")
        if kty == "oct":
            log.warning("%s: ignored, symmetric keys are never accepted", where)
            continue
        usable: dict[str, PyJWK] = {}
        for alg in sorted(allowed):
            family, curves = _FAMILY[alg]
            if kty != family or (curves is not None and crv not in curves):
                continue
            if declared is not None and declared != alg:
                continue
            try:
                jwk = PyJWK(entry, algorithm=alg)
            except (jwt.exceptions.PyJWTError, ValueError, TypeError) as exc:
                log.warning("%s: ignored, %s", where, exc)
                break
            if kty == "RSA" and getattr(jwk.key, "key_size", 0) < MIN_RSA_BITS:
                log.warning("%s: ignored, RSA keys under %d bits are refused", where,
                            MIN_RSA_BITS)
                break
            usable[alg] = jwk
        if usable:
            if kid in keys:
                log.warning("%s: ignored, the kid is used twice", where)
                continue
            keys[kid] = usable
    if not keys:
        raise JWKSError("the JWKS has no usable signing key for the allowed algorithms "
                        f"({', '.join(sorted(allowed))})")
    return keys


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most 3 redirects, never to another scheme nor from https down to http."""

    max_redirections = 3

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        old = urllib.parse.urlsplit(req.full_url).scheme
        new = urllib.parse.urlsplit(newurl).scheme
        if new not in ("http", "https") or (old == "https" and new != "https"):
            raise JWKSError(f"the JWKS URL redirects to a {new or 'relative'!s} URL; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, *, timeout: float, max_bytes: int = MAX_JWKS_BYTES,
              started: list[threading.Thread] | None = None) -> bytes:
    """GET ``url`` and return at most ``max_bytes`` of body, within ``timeout`` seconds.

    The fetch runs in a daemon thread the caller waits for at most ``timeout``: urllib's own
    timeout is per socket operation, so a server dripping its headers byte by byte could
    otherwise hold the caller for much longer. The thread itself checks the same deadline
    between reads of the body and dies on its socket timeout. ``started`` receives the
    thread, so a caller can refuse to start another while one still hangs.
    """
    result: list[bytes] = []
    failure: list[BaseException] = []
    done = threading.Event()
    deadline = time.monotonic() + timeout

    def work() -> None:
        try:
            result.append(_get(url, timeout=timeout, deadline=deadline, max_bytes=max_bytes))
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=work, name="bastion-jwks-fetch", daemon=True)
    thread.start()
    if started is not None:
        started.append(thread)
    if not done.wait(timeout):
        raise JWKSError(f"the JWKS URL did not answer within {timeout:g} s")
    if failure:
        exc = failure[0]
        if isinstance(exc, JWKSError):
            raise exc
        if isinstance(exc, urllib.error.URLError):
            raise JWKSError(f"the JWKS URL cannot be reached: {exc.reason}") from None
        if isinstance(exc, TimeoutError):
            raise JWKSError(f"the JWKS URL did not answer within {timeout:g} s") from None
        raise JWKSError(f"fetching the JWKS failed: {type(exc).__name__}: {exc}") from None
    return result[0]


def _get(url: str, *, timeout: float, deadline: float, max_bytes: int) -> bytes:
    opener = urllib.request.build_opener(_HttpsOnlyRedirects())
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked by the caller
        url, headers={"Accept": "application/jwk-set+json, application/json"})
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()  # an HTTP error is a response too: its socket must not leak
        raise JWKSError(f"the JWKS URL answered HTTP {exc.code}") from None
    with response:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise JWKSError(f"the JWKS is over {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise JWKSError(f"the JWKS URL did not answer within {timeout:g} s")
            chunk = response.read1(min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise JWKSError(f"the JWKS is over {max_bytes} bytes")
        return b"".join(chunks)


class _KeySource:
    """Where the keys come from, cached; ``keys()`` is the hot path and takes no lock."""

    def __init__(self, algorithms: Iterable[str], *, cache_ttl: float, refetch_interval: float,
                 failure_retry: float, max_stale: float) -> None:
        self.algorithms = frozenset(algorithms)
        self.cache_ttl = cache_ttl
        self.refetch_interval = refetch_interval
        self.failure_retry = failure_retry
        self.max_stale = max_stale
        self._set: _KeySet | None = None
        self._lock = threading.Lock()
        self._last_rotation = -float("inf")
        self._next_attempt = -float("inf")
        self._error = "the JWKS has not been loaded yet"

    def read(self) -> bytes:
        raise NotImplementedError

    def changed(self) -> bool:
        """Whether the source must be read again though the cache is fresh."""
        return False

    def keys(self, *, rotate: bool = False) -> _KeySet:
        """The key set; ``rotate`` asks for a refetch (a token named an unknown ``kid``)."""
        now = time.monotonic()
        current = self._set
        stale = current is None or now - current.loaded >= self.cache_ttl or self.changed()
        wanted = stale or (rotate and now - self._last_rotation >= self.refetch_interval)
        if wanted and not stale:
            self._last_rotation = now
        # Only one thread fetches; the others go on with the keys they have, if any.
        if (wanted and now >= self._next_attempt
                and self._lock.acquire(blocking=current is None)):
            try:
                # Re-checked under the lock: threads that queued behind a failed fetch must
                # not each try again (and wait again) in turn.
                if self._set is current and time.monotonic() >= self._next_attempt:
                    self._refresh(now)
            finally:
                self._lock.release()
        current = self._set
        if current is None:
            raise AuthError("jwks_unavailable", f"signing keys unavailable: {self._error}")
        if time.monotonic() - current.loaded > self.cache_ttl + self.max_stale:
            raise AuthError("jwks_unavailable",
                            f"signing keys are stale and cannot be refreshed: {self._error}")
        return current

    def _refresh(self, now: float, *, quiet: bool = False) -> bool:
        """Fetch and parse the keys; a failure is logged (unless ``quiet``: the caller
        raises it) and kept in ``_error``."""
        try:
            keys = parse_jwks(self.read(), self.algorithms)
        except JWKSError as exc:
            self._error = str(exc)
            self._next_attempt = time.monotonic() + self.failure_retry
            if not quiet:
                log.warning("JWKS refresh failed: %s", exc)
            return False
        self._set = _KeySet(keys, time.monotonic())
        self._next_attempt = -float("inf")
        return True

    def refresh(self) -> None:
        """Load the keys now (at start-up), raising :class:`JWKSError` when that fails."""
        with self._lock:
            if not self._refresh(time.monotonic(), quiet=True):
                raise JWKSError(self._error)


class _FileSource(_KeySource):
    def __init__(self, path: Path, algorithms: Iterable[str], **kwargs: float) -> None:
        super().__init__(algorithms, **kwargs)
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        return self._stamp() != self._seen

    def read(self) -> bytes:
        stamp = self._stamp()
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            self._seen = stamp
            raise JWKSError(f"cannot read the JWKS file {self.path}: {exc.strerror}") from None
        self._seen = stamp
        return data

    def _refresh(self, now: float, *, quiet: bool = False) -> bool:
        # A file that changed into something unusable must not keep its old keys serving:
        # the operator may have removed a compromised key. Fail closed. Reading a local file
        # is cheap, so a broken one is read again on the next request (no back-off).
        if super()._refresh(now, quiet=quiet):
            return True
        self._set = None
        self._next_attempt = -float("inf")
        return False


class _UrlSource(_KeySource):
    def __init__(self, url: str, algorithms: Iterable[str], *, timeout: float,
                 **kwargs: float) -> None:
        super().__init__(algorithms, **kwargs)
        self.url = url
        self.timeout = timeout
        self._fetches: list[threading.Thread] = []

    def read(self) -> bytes:
        # A server that hangs must not collect one stuck thread per retry.
        self._fetches = [t for t in self._fetches if t.is_alive()]
        if self._fetches:
            raise JWKSError("the previous JWKS fetch is still waiting for the server")
        return fetch_url(self.url, timeout=self.timeout, started=self._fetches)


class JWTAuthenticator:
    """Validates bearer JWTs against one issuer's JWKS and maps them to principals."""

    def __init__(
        self,
        jwks: str | Path,
        issuer: str,
        audience: str | Sequence[str],
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
        principal_claim: str = "sub",
        groups_claim: str = "groups",
        leeway: float = 30,
        cache_ttl: float = 300,
        *,
        principal_prefix: str = "oidc:",
        fetch_timeout: float = 3.0,
        refetch_interval: float = 60.0,
        failure_retry: float = 5.0,
        max_stale: float = 3600.0,
        max_groups: int = MAX_GROUPS,
        allow_insecure_http: bool = False,
    ) -> None:
        algs = tuple(algorithms)
        refused = [a for a in algs if a not in ASYMMETRIC]
        if refused:
            raise ValueError(f"algorithms {', '.join(refused)} are not allowed: only asymmetric "
                             f"ones ({', '.join(sorted(ASYMMETRIC))}); 'none' and HMAC never")
        if not algs:
            raise ValueError("the algorithm allow-list is empty")
        if not issuer:
            raise ValueError("an issuer is required")
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ValueError("an audience is required")
        self.issuer = issuer
        self.audience: str | list[str] = audiences[0] if len(audiences) == 1 else audiences
        self.algorithms = algs
        self.principal_claim = principal_claim
        self.groups_path = tuple(groups_claim.split(".")) if groups_claim else ()
        self.leeway = leeway
        self.principal_prefix = principal_prefix
        self.max_groups = max_groups
        timing = {"cache_ttl": cache_ttl, "refetch_interval": refetch_interval,
                  "failure_retry": failure_retry, "max_stale": max_stale}
        text = str(jwks)
        parts = urllib.parse.urlsplit(text)
        self.source: _KeySource
        if parts.scheme in ("http", "https"):
            if parts.scheme == "http" and not (allow_insecure_http
                                              or _is_loopback(parts.hostname or "")):
                raise ValueError("a JWKS URL must use https (plain http only on the loopback)")
            self.source = _UrlSource(text, algs, timeout=fetch_timeout, **timing)
        elif parts.scheme and len(parts.scheme) > 1:
            raise ValueError(f"JWKS: use a file path or an http(s) URL, not {parts.scheme}:")
        else:
            self.source = _FileSource(Path(jwks), algs, **timing)

    def refresh(self) -> None:
        """Load the JWKS now; :class:`JWKSError` says why it cannot be used."""
        self.source.refresh()

    @property
    def jwks_file(self) -> Path | None:
        """The JWKS file, or ``None`` when the keys come from a URL."""
        return self.source.path if isinstance(self.source, _FileSource) else None

    def load_file(self) -> None:
        """Load the keys now when they come from a file, so that a missing or unusable file
        stops start-up (:class:`JWKSError`, naming the file) instead of leaving a gateway
        that refuses every token. A URL is left to the first token: its server may be out
        of reach for a moment, and the keys are fetched again when it is back."""
        path = self.jwks_file
        if path is None:
            return
        try:
            self.source.refresh()
        except JWKSError as exc:
            why = str(exc)
            raise JWKSError(why if str(path) in why
                            else f"the JWKS file {path} cannot be used: {why}") from None

    def authenticate(self, token: str) -> Principal:
        """The principal a valid token names, or :class:`AuthError` with the reason."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise AuthError("malformed", "the token is empty or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.PyJWTError:
            raise AuthError("malformed", "the token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError("bad_algorithm", f"token algorithm {str(alg)[:20]!r} is not allowed")
        if "crit" in header:
            raise AuthError("malformed", "the token has critical header extensions")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed", "the token's kid is not a string")
        key = self._key(kid, alg)
        claims = self._decode(token, key, alg)
        return self._principal(claims)

    def _key(self, kid: str | None, alg: str) -> PyJWK:
        keyset = self.source.keys()
        entry = self._lookup(keyset, kid)
        if entry is None and kid is not None:
            keyset = self.source.keys(rotate=True)  # perhaps the issuer rotated its keys
            entry = self._lookup(keyset, kid)
        if entry is None:
            if kid is None:
                raise AuthError("unknown_key", f"the token has no kid and the JWKS holds "
                                f"{keyset.count} keys")
            raise AuthError("unknown_key", f"no key {kid[:64]!r} in the JWKS")
        key = entry.get(alg)
        if key is None:
            raise AuthError("bad_algorithm", f"algorithm {alg} does not fit the token's key")
        return key

    @staticmethod
    def _lookup(keyset: _KeySet, kid: str | None) -> Mapping[str, PyJWK] | None:
        if kid is not None:
            return keyset.keys.get(kid)
        if keyset.count == 1:
            return next(iter(keyset.keys.values()))
        return None

    def _decode(self, token: str, key: PyJWK, alg: str) -> dict[str, Any]:
        options: dict[str, Any] = {"require": ["exp", "iss", "aud"],
                                   "enforce_minimum_key_length": True}
        errors = jwt.exceptions
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options=options)  # type: ignore[arg-type]
            return claims
        except errors.ExpiredSignatureError:
            raise AuthError("expired", "the token has expired") from None
        except errors.ImmatureSignatureError:
            raise AuthError("not_yet_valid", "the token is not valid yet") from None
        except errors.InvalidIssuerError:
            raise AuthError("bad_issuer", "the token's issuer is not trusted") from None
        except errors.InvalidAudienceError:
            raise AuthError("bad_audience", "the token is not meant for this gateway") from None
        except errors.InvalidSignatureError:
            raise AuthError("bad_signature", "the token's signature does not verify") from None
        except errors.InvalidAlgorithmError:
            raise AuthError("bad_algorithm", "the token's algorithm is not allowed") from None
        except errors.MissingRequiredClaimError as exc:
            raise AuthError("malformed", f"the token has no {exc.claim!r} claim") from None
        except (errors.PyJWTError, ValueError, TypeError):
            raise AuthError("malformed", "the token cannot be decoded") from None

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims.get(self.principal_claim)
        if (not isinstance(subject, str) or not subject.strip()
                or len(subject) > MAX_NAME_CHARS or not subject.isprintable()):
            raise AuthError("malformed", f"the token's {self.principal_claim!r} claim is not a "
                            "short printable string")
        return Principal(name=self.principal_prefix + subject, groups=self._groups(claims),
                         via="jwt")

    def _groups(self, claims: Mapping[str, Any]) -> frozenset[str]:
        value: Any = claims
        for part in self.groups_path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or not self.groups_path:
            return frozenset()
        if isinstance(value, str):
            if len(value) > self.max_groups * (MAX_GROUP_CHARS + 1):
                raise AuthError("malformed", "the token's groups claim is too long")
            value = value.split()
        if not isinstance(value, list):
            raise AuthError("malformed", "the token's groups claim is not a list or string")
        if len(value) > self.max_groups:
            raise AuthError("malformed", f"the token names {len(value)} groups "
                            f"(limit {self.max_groups})")
        for group in value:
            if (not isinstance(group, str) or not group or len(group) > MAX_GROUP_CHARS
                    or not group.isprintable()):
                raise AuthError("malformed", "the token's groups must be short printable "
                                "strings")
        return frozenset(value)
