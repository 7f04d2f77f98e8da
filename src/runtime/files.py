"""The files of a loaded version in a worker: its copy on disk and its module loader.

A version's files are written once per node, to ``<shared>/<app>/v<N>`` in the folder the
node names in ``PUSH_FILES_DIR`` (removed when the node stops), and shared by its workers: the
first worker to load the version writes it, the others find it. Without that folder, a worker
writes its own copy under a folder of its own (removed when it stops). The deploy gate always
writes its own copy, removed right after the gate: a version that fails the gate is not
committed, and its number comes again with other files. So module ``__file__`` is a real path
(Flask finds its ``templates`` beside it) and the version's loader answers
``importlib.resources`` from that folder. Module code itself runs from the
code store's source, compiled under the version's label (``APP@vN/path``) for tracebacks.

``shutil``, ``tempfile`` and ``pathlib`` are imported only where needed: with what they
import (``random``, ``bz2``, ``lzma``, ...) they cost every worker ~1.3 MB.
"""

import os

try:
    # importlib.abc.Loader itself, without importlib.abc's imports (importlib.resources and,
    # through it, pathlib, tempfile, zipfile...: ~4 MB per worker on Python 3.11).
    from importlib._abc import Loader as _Loader
except ImportError:  # pragma: no cover - an interpreter without the private module
    from importlib.abc import Loader as _Loader


class VersionLoader(_Loader):
    """Runs one version's modules from the code store, and serves the files beside them
    (``importlib.resources``) from the version's copy on disk."""

    def __init__(self, modules, packages, base, imported=None, compiled=None):
        self.modules = modules  # dotted name -> (label, source, is_package, path on disk)
        self.packages = packages  # dotted names of folders (implicit packages)
        self.base = base
        # Code already compiled (the load's syntax check of every module), used once each.
        self.compiled = compiled if compiled is not None else {}
        # The loaded version's modules (name -> module), once it is loaded: a module first
        # imported later joins them, so the next version's swap replaces it too.
        self.imported = imported

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__spec__.name
        if name in self.modules:
            label, source, _, disk = self.modules[name]
            # A real path, so frameworks find files beside the module (Flask's templates);
            # tracebacks keep the version's label (APP@vN/path), kept for hot patches too.
            module.__file__ = disk
            module.__push_file__ = label
            code = self.compiled.pop(name, None)
            if code is None:
                code = compile(source, label, "exec", dont_inherit=True)
            exec(code, module.__dict__)
        if self.imported is not None:
            self.imported[name] = module

    def get_resource_reader(self, fullname):
        return Resources(os.path.join(self.base, *fullname.split(".")))


class Resources:
    """``importlib.resources`` reader of a package's folder in the version's copy."""

    def __init__(self, path):
        self.path = path

    def files(self):
        import pathlib

        return pathlib.Path(self.path)

    def open_resource(self, resource):
        return open(os.path.join(self.path, resource), "rb")

    def resource_path(self, resource):
        return os.path.join(self.path, resource)

    def is_resource(self, name):
        return os.path.isfile(os.path.join(self.path, name))

    def contents(self):
        return iter(os.listdir(self.path))


_root = None


def root():
    global _root
    if _root is None:
        # As ``tempfile.mkdtemp`` does (a fresh name, mode 0o700), without its imports.
        base = os.environ.get("TMPDIR") or "/tmp"
        while _root is None:
            path = os.path.join(base, f"push-worker-{os.getpid()}-{os.urandom(6).hex()}")
            try:
                os.mkdir(path, 0o700)
                _root = path
            except FileExistsError:
                continue
    return _root


def remove(path):
    """Remove the folder ``path`` and everything in it, if it exists."""
    if os.path.lexists(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)


# A key of a version's files that names a binary file by the node's blob file holding it
# (``LINK + path`` -> blob file): linked (or copied) into the folder, never held as a string.
LINK = "\0link:"


def materialize(app, number, files, scratch):
    """The version's files as a folder on disk (written once per version and node, or per
    worker without the node's folder)."""
    shared = None if scratch else os.environ.get("PUSH_FILES_DIR")
    base = os.path.join(shared or root(), ("gate-" if scratch else "") + app, f"v{number}")
    if os.path.isdir(base) and not scratch:
        return base
    if not shared:
        remove(base)
    # Workers of one node may write the same version at once: each into a folder of its
    # own, the first renamed into place; the others' go.
    staging = f"{base}.writing-{os.getpid()}"
    remove(staging)
    for path, text in files.items():
        if path.startswith(LINK):
            target = os.path.join(staging, *path[len(LINK):].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(text, target)
            except OSError:
                import shutil

                shutil.copyfile(text, target)
            continue
        target = os.path.join(staging, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    os.makedirs(staging, exist_ok=True)
    try:
        os.replace(staging, base)
    except OSError:
        if not os.path.isdir(base):
            raise
        remove(staging)
    return base


def remove_files():
    """Remove this worker's copies of the versions' files (it is stopping)."""
    if _root is not None:
        remove(_root)
