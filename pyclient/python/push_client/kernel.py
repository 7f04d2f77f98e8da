"""A Jupyter kernel that evaluates on a live Push node (Notebook, Lab, ``jupyter console``).

It is a wrapper kernel: this process speaks Jupyter's protocol (ipykernel) and sends each
request to the node over push_client, the same requests the REPL sends. Cells run in one
eval session on the node, so names persist between cells; output streams while the cell
runs; completion and inspection come from the live objects; an interrupt (message mode)
interrupts the node's evaluation.

The node is ``$PUSH_ADDR`` (the kernelspec sets it) and the token ``$PUSH_TOKEN``, else the
file ``$PUSH_TOKEN_FILE``, else ``.push/token`` in the kernel's working directory.

    python -m push_client.kernel -f CONNECTION_FILE        (what Jupyter runs)
    python -m push_client.kernel install --to HOST:PORT [--user | --prefix P] [--name N]
        [--token-file F]                                   (what `push kernel install` runs)
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

from ipykernel.kernelbase import Kernel

import push_client

# The dotted name (or call target) that ends at the cursor: what inspection looks up.
_NAME_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


class PushKernel(Kernel):
    """Jupyter kernel whose cells run on a Push node (see the module's doc)."""

    implementation = "push"
    implementation_version = push_client._native.PUSH_VERSION
    language = "python"
    language_version = ".".join(map(str, sys.version_info[:3]))
    language_info = {
        "name": "python",
        "mimetype": "text/x-python",
        "file_extension": ".py",
        "pygments_lexer": "ipython3",
        "codemirror_mode": {"name": "ipython", "version": 3},
    }
    banner = "Push: Python on a live cluster node"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._conn = None
        self._session = None

    def _ensure(self):
        """The connection and session, made on first use (a bad address then becomes an
        error in the cell's reply instead of a kernel that dies at start)."""
        if self._session is None:
            self._conn = push_client.connect()
            self._session = self._conn.session()
            version = self._conn.status().get("python_version")
            if version:
                self.language_info = dict(self.language_info, version=version)
        return self._session

    def _error_reply(self, ename, evalue, traceback):
        self.send_response(self.iopub_socket, "error", {"ename": ename, "evalue": evalue, "traceback": traceback})
        return {"status": "error", "execution_count": self.execution_count, "ename": ename, "evalue": evalue, "traceback": traceback}

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False, **kwargs):
        ok = {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}
        if not code.strip():
            return ok

        def output(stream, text):
            if not silent:
                self.send_response(self.iopub_socket, "stream", {"name": stream, "text": text})

        try:
            result = self._ensure().eval(code, on_output=output)
        except (push_client.PushError, ValueError, OSError) as e:
            return self._error_reply(type(e).__name__, str(e), [f"{type(e).__name__}: {e}"])
        if result.error is not None:
            error = result.error
            return self._error_reply(error["type_name"], error["message"], error["formatted"].rstrip("\n").split("\n"))
        if result.value is not None and not silent:
            self.send_response(self.iopub_socket, "execute_result", {
                "execution_count": self.execution_count,
                "data": {"text/plain": result.value},
                "metadata": {},
            })
        return ok

    async def do_complete(self, code, cursor_pos):
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        try:
            start, matches = self._ensure().complete(code, cursor_pos)
        except (push_client.PushError, ValueError, OSError):
            start, matches = cursor_pos, []
        return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": cursor_pos, "metadata": {}}

    async def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        # The name under the cursor: extend to the end of the identifier, then take the
        # dotted name ending there.
        end = cursor_pos
        while end < len(code) and (code[end].isalnum() or code[end] == "_"):
            end += 1
        head = code[:end]
        if head.endswith("("):
            head = head[:-1]
        match = _NAME_AT.search(head)
        if not match:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        try:
            found = self._ensure().inspect(match.group(0))
        except (push_client.PushError, ValueError, OSError):
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        lines = [f"Type:      {found['type_name']}"]
        if found.get("signature"):
            lines.append(f"Signature: {found['signature']}")
        lines.append(f"Value:     {found['repr']}")
        if found.get("file"):
            where = found["file"] + (f":{found['line']}" if found.get("line") else "")
            lines.append(f"File:      {where}")
        if found.get("doc"):
            lines.append("Docstring:\n" + found["doc"])
        return {"status": "ok", "found": True, "data": {"text/plain": "\n".join(lines)}, "metadata": {}}

    async def do_is_complete(self, code):
        try:
            self._ensure()
            complete = self._conn.is_complete(code)
        except (push_client.PushError, ValueError, OSError):
            return {"status": "unknown"}
        if complete:
            return {"status": "complete"}
        return {"status": "incomplete", "indent": "    " if code.rstrip().endswith(":") else ""}

    async def interrupt_request(self, stream, ident, parent):
        """Interrupt in message mode: interrupt the evaluation running on the node."""
        content = {"status": "ok"}
        if self._session is not None:
            try:
                self._session.interrupt()
            except push_client.PushError as e:
                content = {"status": "error", "ename": type(e).__name__, "evalue": str(e), "traceback": [str(e)]}
        self.session.send(stream, "interrupt_reply", content, parent, ident=ident)

    async def do_shutdown(self, restart):
        if self._conn is not None:
            self._conn.close()
            self._conn = self._session = None
        return {"status": "ok", "restart": restart}


def install(argv):
    """Install the kernelspec (what `push kernel install` runs)."""
    parser = argparse.ArgumentParser(prog="push kernel install", description="Install the Push Jupyter kernelspec.")
    parser.add_argument("--to", required=True, metavar="HOST:PORT", help="the node the kernel evaluates on")
    parser.add_argument("--name", default="push", help="kernelspec name (default: push)")
    parser.add_argument("--token-file", help="file holding the token (else $PUSH_TOKEN, else .push/token)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for this user (the default)")
    where.add_argument("--prefix", help="install under PREFIX/share/jupyter/kernels (a virtualenv, say)")
    args = parser.parse_args(argv)
    from jupyter_client.kernelspec import KernelSpecManager

    env = {"PUSH_ADDR": args.to}
    if args.token_file:
        env["PUSH_TOKEN_FILE"] = os.path.abspath(args.token_file)
    spec = {
        "argv": [sys.executable, "-m", "push_client.kernel", "-f", "{connection_file}"],
        "display_name": f"Push ({args.to})",
        "language": "python",
        "interrupt_mode": "message",
        "env": env,
        "metadata": {"debugger": False},
    }
    staging = tempfile.mkdtemp()
    try:
        with open(os.path.join(staging, "kernel.json"), "w") as f:
            json.dump(spec, f, indent=2)
        dest = KernelSpecManager().install_kernel_spec(
            staging, args.name, user=args.prefix is None, prefix=args.prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"installed kernelspec {args.name!r} in {dest} (evaluates on {args.to})")


def main():
    if sys.argv[1:2] == ["install"]:
        install(sys.argv[2:])
        return
    from ipykernel.kernelapp import IPKernelApp
    IPKernelApp.launch_instance(kernel_class=PushKernel)


if __name__ == "__main__":
    main()
