"""A deterministic English sentence set built at run time from the Python standard library's own prose.

Nothing is shipped in the repository and nothing is downloaded: the sentences come from docstrings of a fixed
list of pure-Python standard-library modules and from `pydoc_data/topics.py` (the language reference as
plain text), read from disk with `ast` (no module is imported). Paragraphs are split into sentences; a
sentence is kept when it has 6-40 words, starts with a capital letter, ends with a full stop, is ASCII and
has no code-looking characters. Sentences are deduplicated (case-insensitively), sorted by their sha256 and
split in that order: the first 512 are the calibration split, the next 300 the evaluation split and the rest
the training pool (used by distillation). The same stdlib (CPython 3.11.x) gives the same list everywhere.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sysconfig
from pathlib import Path

from hasten.errors import DataError

#: Split sizes, in sentence-hash order: calibration first, then evaluation, then the training pool.
CALIBRATION_SIZE = 512
EVALUATION_SIZE = 300
SPLITS = ("calibration", "evaluation", "train")

#: Pure-Python standard-library files whose docstrings are mined (paths relative to the stdlib folder).
#: A file missing from an unusual installation is skipped; the set then differs only by its sentences.
_SOURCES = (
    "argparse.py", "ast.py", "asyncio/base_events.py", "asyncio/events.py", "asyncio/futures.py",
    "asyncio/locks.py", "asyncio/queues.py", "asyncio/streams.py", "asyncio/tasks.py", "base64.py",
    "bdb.py", "bisect.py", "calendar.py", "cmd.py", "codecs.py", "collections/__init__.py",
    "concurrent/futures/_base.py", "configparser.py", "contextlib.py", "copy.py", "csv.py",
    "dataclasses.py", "datetime.py", "difflib.py", "dis.py", "doctest.py", "email/message.py",
    "email/utils.py", "enum.py", "filecmp.py", "fileinput.py", "fnmatch.py", "fractions.py", "ftplib.py",
    "functools.py", "getopt.py", "gettext.py", "glob.py", "graphlib.py", "gzip.py", "heapq.py", "hmac.py",
    "html/parser.py", "http/client.py", "http/cookiejar.py", "http/server.py", "imaplib.py",
    "importlib/__init__.py", "importlib/_bootstrap.py", "importlib/_bootstrap_external.py", "inspect.py",
    "ipaddress.py", "json/__init__.py", "json/decoder.py", "json/encoder.py", "locale.py",
    "logging/__init__.py", "logging/handlers.py", "mailbox.py", "mimetypes.py", "multiprocessing/pool.py",
    "multiprocessing/process.py", "netrc.py", "ntpath.py", "optparse.py", "os.py", "pathlib.py", "pdb.py",
    "pickle.py", "pickletools.py", "pkgutil.py", "platform.py", "plistlib.py", "poplib.py", "posixpath.py",
    "pprint.py", "profile.py", "pstats.py", "pydoc.py", "queue.py", "random.py", "re/__init__.py",
    "reprlib.py", "sched.py", "secrets.py", "selectors.py", "shelve.py", "shlex.py", "shutil.py",
    "smtplib.py", "socket.py", "socketserver.py", "statistics.py", "string.py", "subprocess.py",
    "tarfile.py", "tempfile.py", "textwrap.py", "threading.py", "timeit.py", "tokenize.py", "trace.py",
    "traceback.py", "types.py", "typing.py", "unittest/case.py", "unittest/mock.py", "urllib/parse.py",
    "urllib/request.py", "uuid.py", "warnings.py", "weakref.py", "zipfile.py", "zipimport.py",
    "_pydecimal.py", "_pyio.py",
)
_TOPICS = "pydoc_data/topics.py"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_CHARS = re.compile(r"[{}\[\]()<>=_*`\\|#@~^$%/]|\.\.|::|>>>|\bXXX\b|\bTODO\b")
_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[A-Za-z]?[,;:.!?\"]*$|^\"[A-Za-z][A-Za-z'\-]*[,;:.!?\"]*$")


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def docstrings(path: Path) -> list[str]:
    """Module, class and function docstrings of one source file (parsed, never imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append(doc)
    return out


def _topics(path: Path) -> list[str]:
    """The string values of the `topics = {...}` dict in pydoc_data/topics.py."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    out.append(value.value)
    return out


def paragraphs(text: str) -> list[str]:
    """Prose paragraphs: blank-line separated blocks whose lines are not indented (indented = code)."""
    paras = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.split("\n")
        if any(line.startswith((" ", "\t")) for line in lines):
            continue
        if lines and set(lines[-1].strip()) <= set("*=-~^"):  # a reST heading underline
            continue
        joined = " ".join(line.strip() for line in lines)
        paras.append(re.sub(r"(?<=[a-z])- (?=[a-z])", "-", joined))  # re-join words hyphenated at a line end
    return paras


def is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not 6 <= len(words) <= 40:
        return False
    if not sentence[0].isupper() or not sentence.endswith(".") or not sentence.isascii():
        return False
    if _CODE_CHARS.search(sentence):
        return False
    if sum(1 for w in words if _WORD.match(w)) < len(words):
        return False
    lowercase = sum(1 for w in words[1:] if w[0].islower())
    return lowercase >= 0.6 * (len(words) - 1)  # prose, not a Title Case Heading Or List Of Names


def _key(sentence: str) -> str:
    return hashlib.sha256(sentence.encode("utf-8")).hexdigest()


@functools.cache
def _all_sentences() -> tuple[str, ...]:
    root = _stdlib()
    texts: list[str] = []
    for rel in _SOURCES:
        texts.extend(docstrings(root / rel))
    texts.extend(_topics(root / _TOPICS))
    seen: set[str] = set()
    kept: list[str] = []
    for text in texts:
        for para in paragraphs(text):
            for raw in _SENTENCE_END.split(para):
                sentence = re.sub(r"\s+", " ", raw).strip()
                if not is_prose(sentence):
                    continue
                norm = sentence.lower()
                if norm not in seen:
                    seen.add(norm)
                    kept.append(sentence)
    kept.sort(key=_key)
    need = CALIBRATION_SIZE + EVALUATION_SIZE + 100
    if len(kept) < need:
        raise DataError(f"the standard library at {root} gave only {len(kept)} English sentences "
                        f"(need {need}); hasten's text set expects a full CPython 3.11 installation")
    return tuple(kept)


def sentences(split: str = "calibration") -> list[str]:
    """The sentences of one split: "calibration" (512), "evaluation" (300) or "train" (the rest).

    Splits are disjoint and come out in the same order on every call and machine (same stdlib).
    """
    every = _all_sentences()
    a, b = CALIBRATION_SIZE, CALIBRATION_SIZE + EVALUATION_SIZE
    if split == "calibration":
        return list(every[:a])
    if split == "evaluation":
        return list(every[a:b])
    if split == "train":
        return list(every[b:])
    raise DataError(f"unknown text split {split!r}; choose one of {', '.join(SPLITS)}")
