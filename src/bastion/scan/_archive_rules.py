"""The rules of the archive analyzer (:mod:`bastion.scan.archive`).

Also which rule reports each kind of zip discrepancy found by :mod:`bastion.scan.ziputil`.
"""

from __future__ import annotations

from bastion.findings import Category, Reference, Severity
from bastion.rules import Rule
from bastion.scan._archiveinfo import Kind

_REFS = ("ML06", "AML.T0010")


def _rule(id_: str, title: str, severity: Severity, category: Category, description: str,
          remediation: str, *refs: str) -> Rule:
    return Rule(id=id_, title=title, severity=severity, category=category,
                description=description, remediation=remediation,
                references=tuple(Reference.of(ref) for ref in (*_REFS, *refs)))


_REBUILD = "Rebuild the archive with a standard tool from trusted files, or obtain it again."

BOMB = _rule(
    "ARCHIVE-BOMB", "Decompression bomb", Severity.HIGH, Category.RESOURCE,
    "A member decompresses at a ratio over `limits.max-compression-ratio`, or zip members "
    "overlap so one payload is expanded many times. Loaders and extractors exhaust memory or "
    "disk; Bastion stopped reading the archive.", _REBUILD, "CWE-409")
LIMIT = _rule(
    "ARCHIVE-LIMIT", "Archive larger than the scan limits", Severity.MEDIUM, Category.COVERAGE,
    "The archive holds more members or decompressed bytes than `limits.max-archive-members` "
    "or `limits.max-decompressed-size` allow (for one file's whole archive tree). The rest "
    "was not scanned, so it fails closed.",
    "Raise the limits in the policy if the archive is expected to be this large.", "CWE-409")
DEPTH = _rule(
    "ARCHIVE-DEPTH-EXCEEDED", "Archives nested deeper than the limit", Severity.MEDIUM,
    Category.COVERAGE,
    "An archive sits deeper inside other archives than `limits.max-archive-depth`; its "
    "members were not scanned. Deep nesting is a classic bomb and scanner-evasion technique.",
    "Flatten the archive, or raise `limits.max-archive-depth` if the nesting is expected.",
    "CWE-409")
TRAVERSAL_RULE = _rule(
    "ARCHIVE-PATH-TRAVERSAL", "Member name escapes the extraction folder (zip-slip)",
    Severity.HIGH, Category.MALFORMED,
    "A member name is absolute, has a drive letter or climbs with `..` (also as `..\\` on "
    "Windows). Extracting the archive writes outside the target folder: overwrite code, "
    "configuration or another model.", "Do not extract it; rebuild it with relative names.",
    "CWE-22")
SUSPICIOUS_NAME = _rule(
    "ARCHIVE-SUSPICIOUS-NAME", "Member name with NUL, control characters or backslashes",
    Severity.MEDIUM, Category.MALFORMED,
    "A member name holds a NUL byte (CPython cuts the name there, other tools do not), "
    "control characters or backslash separators: tools disagree about which file it is.",
    _REBUILD, "CWE-22")
LINK_ESCAPE = _rule(
    "ARCHIVE-LINK-ESCAPE", "Link member points outside the archive", Severity.HIGH,
    Category.MALFORMED,
    "A tar symbolic or hard link points at an absolute path or climbs out of the archive "
    "root (e.g. to /etc/passwd). Extraction, or a later member written through the link, "
    "reads or overwrites files outside the target folder.",
    "Do not extract it; remove the link.", "CWE-22", "CWE-59")
SPECIAL = _rule(
    "ARCHIVE-SPECIAL-MEMBER", "Device or FIFO member", Severity.MEDIUM, Category.MALFORMED,
    "A tar member is a character or block device or a FIFO. No model archive needs one; "
    "extracted as root it gives access to hardware or makes readers block forever.",
    "Remove the member.", "CWE-67")
ENCRYPTED = _rule(
    "ARCHIVE-ENCRYPTED", "Encrypted member cannot be scanned", Severity.HIGH, Category.COVERAGE,
    "The member is encrypted, so Bastion cannot see what it holds; it fails closed. "
    "Encryption is a common way to carry a payload past scanners.",
    "Scan the decrypted content, or obtain an unencrypted copy from the publisher.")
UNSUPPORTED = _rule(
    "ARCHIVE-UNSUPPORTED", "Compression Bastion cannot decode", Severity.MEDIUM,
    Category.COVERAGE,
    "The archive or member uses a format or compression method Bastion does not decode "
    "(LZ4, Zstandard, 7-Zip, RAR, sparse tar members, unusual zip methods). Its content was "
    "not analysed, so it fails closed.",
    "Repack it as zip (deflate), tar, gzip, bzip2 or xz, or scan its content separately.")
CORRUPT = _rule(
    "ARCHIVE-CORRUPT", "Archive is truncated or corrupt", Severity.HIGH, Category.MALFORMED,
    "The archive or a member cannot be read to its end: truncated, corrupt, or crafted. "
    "What could not be read was not checked, and loaders may read it differently.",
    _REBUILD, "CWE-20")
HIDDEN_DATA = _rule(
    "ARCHIVE-HIDDEN-DATA", "Bytes outside any archive member", Severity.MEDIUM,
    Category.MALFORMED,
    "The file holds data that no member covers: before a zip's first member (prepended: a "
    "self-extractor stub or a polyglot), between members, after the end record, after a "
    "tar's end marker or a compressed stream. Other tools may read it as content.",
    _REBUILD, "CWE-434")
ZIP_DUPLICATE = _rule(
    "ZIP-DUPLICATE-NAME", "Zip member name used twice", Severity.HIGH, Category.MALFORMED,
    "Two central directory entries have the same name. CPython's zipfile reads the last, "
    "extractors and other readers the first: a scanner and a loader see different files.",
    _REBUILD, "CWE-436")
ZIP_NAME_MISMATCH = _rule(
    "ZIP-NAME-MISMATCH", "Zip local header name differs from the central directory",
    Severity.HIGH, Category.MALFORMED,
    "A member's local header names a different file than its central directory entry. "
    "CPython's zipfile refuses it; PyTorch and streaming extractors read it, so a scanner "
    "built on zipfile misses what torch.load unpickles.", _REBUILD, "CWE-436")
ZIP_HEADER_MISMATCH = _rule(
    "ZIP-HEADER-MISMATCH", "Zip headers disagree", Severity.MEDIUM, Category.MALFORMED,
    "Zip records contradict each other: local and central method, flags, sizes or CRC; a "
    "wrong CRC (CPython refuses the member, PyTorch does not check); more data than the "
    "declared size; an entry count the directory does not hold; multi-disk fields.",
    _REBUILD, "CWE-436")
ZIP_OVERLAP = _rule(
    "ZIP-OVERLAP", "Zip members overlap", Severity.HIGH, Category.RESOURCE,
    "Member data ranges overlap: Fifield's non-recursive zip bomb (one compressed kernel "
    "expanded for every entry), or one payload reachable under two names.",
    _REBUILD, "CWE-409", "CWE-436")
ZIP_HIDDEN_ENTRY = _rule(
    "ZIP-HIDDEN-ENTRY", "Zip entry not listed in the central directory", Severity.HIGH,
    Category.MALFORMED,
    "A local file header sits where no central directory entry points. Readers that walk "
    "local headers (streaming unzip, some Java and Go tools) see a member that zipfile and "
    "PyTorch do not.", _REBUILD, "CWE-436")
ZIP_MULTIPLE_EOCD = _rule(
    "ZIP-MULTIPLE-EOCD", "Several zip end records (concatenated archives)", Severity.HIGH,
    Category.MALFORMED,
    "The file holds more than one end-of-central-directory record. CPython and PyTorch read "
    "the last, other readers the first: two archives in one file. Bastion scans both views.",
    _REBUILD, "CWE-436")

RULES: tuple[Rule, ...] = (
    BOMB, LIMIT, DEPTH, TRAVERSAL_RULE, SUSPICIOUS_NAME, LINK_ESCAPE, SPECIAL, ENCRYPTED,
    UNSUPPORTED, CORRUPT, HIDDEN_DATA, ZIP_DUPLICATE, ZIP_NAME_MISMATCH, ZIP_HEADER_MISMATCH,
    ZIP_OVERLAP, ZIP_HIDDEN_ENTRY, ZIP_MULTIPLE_EOCD,
)

KIND_RULE = {
    Kind.DUPLICATE_NAME: ZIP_DUPLICATE, Kind.NAME_MISMATCH: ZIP_NAME_MISMATCH,
    Kind.HEADER_MISMATCH: ZIP_HEADER_MISMATCH, Kind.COUNT_MISMATCH: ZIP_HEADER_MISMATCH,
    Kind.SPANNED: ZIP_HEADER_MISMATCH, Kind.BAD_LOCAL_HEADER: CORRUPT, Kind.TRUNCATED: CORRUPT,
    Kind.OVERLAP: ZIP_OVERLAP, Kind.PREPENDED_DATA: HIDDEN_DATA, Kind.EMBEDDED_DATA: HIDDEN_DATA,
    Kind.TRAILING_DATA: HIDDEN_DATA, Kind.HIDDEN_ENTRY: ZIP_HIDDEN_ENTRY,
    Kind.MULTIPLE_EOCD: ZIP_MULTIPLE_EOCD, Kind.ENCRYPTED: ENCRYPTED,
    Kind.UNKNOWN_METHOD: UNSUPPORTED, Kind.MEMBER_LIMIT: LIMIT,
}
#: Discrepancies about one member, reported for the other views of a zip too.
MEMBER_KINDS = {Kind.UNSAFE_NAME, Kind.ENCRYPTED, Kind.UNKNOWN_METHOD, Kind.BAD_LOCAL_HEADER,
                 Kind.TRUNCATED, Kind.NAME_MISMATCH, Kind.HEADER_MISMATCH}
