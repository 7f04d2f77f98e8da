"""The Jupyter kernel, driven headlessly by jupyter_kernel_test (a real Jupyter client over
ZeroMQ) against a live 3-node cluster; installed with `push kernel install`."""

import os
import shutil
import tempfile
import unittest

import jupyter_kernel_test

from conftest import Cluster


class PushKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "push-test"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    completion_samples = [{"text": "import os\nos.pathse", "matches": {"pathsep"}}]
    complete_code_samples = ["1 + 1", "x = 2", "def f():\n    return 1\n"]
    incomplete_code_samples = ["def f():", "for i in range(3):"]
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [{"code": "6 * 7", "result": "42"}, {"code": "'a' + 'b'", "result": "'ab'"}]
    code_inspect_sample = "len"

    # Jupyter features this kernel does not offer (a pager, rich display, clear_output, the
    # history service): not collected, rather than reported as skipped.
    test_pager = test_display_data = test_clear_output = test_history = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(3)
        cls.prefix = tempfile.mkdtemp(prefix="push-kernelspec-")
        out = cls.cluster.cli("kernel", "install", "--prefix", cls.prefix, "--name", cls.kernel_name)
        assert "installed kernelspec" in out, out
        cls.jupyter_path = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.path.join(cls.prefix, "share", "jupyter")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.cluster.stop()
        if cls.jupyter_path is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = cls.jupyter_path
        shutil.rmtree(cls.prefix, ignore_errors=True)

    def test_names_persist_between_cells_on_the_node(self):
        self.flush_channels()
        reply, _ = self.execute_helper("import os\nkernel_pid = os.getpid()\nanswer = 41")
        self.assertEqual(reply["content"]["status"], "ok")
        reply, output = self.execute_helper("answer + 1")
        result = [m for m in output if m["msg_type"] == "execute_result"]
        self.assertEqual(result[0]["content"]["data"]["text/plain"], "42")
        # The cell ran on the node, not in the kernel process.
        reply, output = self.execute_helper("kernel_pid")
        pid = int([m for m in output if m["msg_type"] == "execute_result"][0]["content"]["data"]["text/plain"])
        self.assertNotEqual(pid, self.km.provisioner.process.pid)

    def test_output_streams_in_order(self):
        self.flush_channels()
        reply, output = self.execute_helper("for i in range(3):\n    print('line', i, flush=True)")
        text = "".join(m["content"]["text"] for m in output if m["msg_type"] == "stream")
        self.assertEqual(text, "line 0\nline 1\nline 2\n")

    def test_error_carries_the_node_traceback(self):
        self.flush_channels()
        reply, output = self.execute_helper("def f():\n    raise KeyError('k')\nf()")
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "KeyError")
        tb = "\n".join(reply["content"]["traceback"])
        self.assertIn("Traceback", tb)
        self.assertIn("in f", tb)

    def test_interrupt_stops_the_eval_on_the_node(self):
        self.flush_channels()
        msg_id = self.kc.execute("import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.01)")
        # Its output means the cell runs on the node; the interrupt (message mode) stops it there.
        while True:
            msg = self.kc.get_iopub_msg(timeout=20)
            if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
                break
        self.km.interrupt_kernel()
        reply = self.kc.get_shell_msg(timeout=30)
        self.assertEqual(reply["parent_header"]["msg_id"], msg_id)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
        while True:  # the interrupted cell's last messages, up to its idle
            msg = self.kc.get_iopub_msg(timeout=20)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                    and msg["content"]["execution_state"] == "idle":
                break
        reply, output = self.execute_helper("'still alive'")
        self.assertEqual(reply["content"]["status"], "ok")


if __name__ == "__main__":
    unittest.main()
