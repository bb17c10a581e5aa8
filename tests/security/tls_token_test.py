#!/usr/bin/python3
"""logn_server with TLS, mutual TLS and an admin token, driven by the real `logn` CLI.

    tls_token_test.py --server-binary B --logn L --model M --data DIR --work-dir W

Certificates (a CA, a server certificate for 127.0.0.1, a client certificate) are made in the
test with the openssl command.
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "client", "testing"))
from logn_test_server import LognServer, run_unittests  # noqa: E402

ARGS = None
TOKEN = "tok-3f9a1c27-not-in-any-log"


def openssl(*argv, cwd):
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True)


def make_certificates(d: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=logn-test-ca", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", "server.ext"), ("client", None)):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN=logn-test-{name}", cwd=d)
        sign = ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2"]
        openssl(*(sign + (["-extfile", ext] if ext else [])), cwd=d)


def logn(*argv):
    return subprocess.run([ARGS.logn, *argv], capture_output=True, text=True, timeout=120)


class TlsAndTokenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.abspath(ARGS.work_dir)
        shutil.rmtree(cls.dir, ignore_errors=True)
        os.makedirs(cls.dir)
        make_certificates(cls.dir)
        cls.token_file = os.path.join(cls.dir, "admin-token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")  # a trailing newline, as `echo` or a Secret leaves it
        p = lambda name: os.path.join(cls.dir, name)  # noqa: E731
        cls.ca, cls.client_cert, cls.client_key = p("ca.pem"), p("client.pem"), p("client.key")
        cls.server = LognServer(ARGS.server_binary, ARGS.model, p("mtls"), extra_args=[
            f"--tls_cert={p('server.pem')}", f"--tls_key={p('server.key')}",
            f"--tls_client_ca={cls.ca}", f"--admin_token_file={cls.token_file}"])
        cls.server.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        with open(cls.server.log.name) as f:
            log = f.read()
        assert TOKEN not in log, "the admin token was logged"

    def mtls(self):
        return ["--server", self.server.address, "--tls-ca", self.ca, "--tls-cert",
                self.client_cert, "--tls-key", self.client_key, "--retries", "1"]

    def calibrate(self, *extra):
        data = ARGS.data
        return logn("calibrate", *self.mtls(), "--dataset", os.path.join(data, "train.json"),
                    "--images", os.path.join(data, "train"), "--batch-images", "16", *extra)

    def test_mutual_tls_client_is_served(self):
        r = logn("health", *self.mtls())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("SERVING", r.stdout)

    def test_client_without_certificate_or_plaintext_is_refused(self):
        for argv in (["--tls-ca", self.ca], []):
            with self.subTest(argv=argv):
                r = logn("health", "--server", self.server.address, "--retries", "1",
                         "--deadline", "5", *argv)
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn("UNAVAILABLE", r.stderr)
        # ... and the server keeps serving.
        self.assertEqual(logn("health", *self.mtls()).returncode, 0)

    def test_mutating_calls_need_the_admin_token(self):
        r = self.calibrate()
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        r = self.calibrate("--token", TOKEN + "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("PERMISSION_DENIED", r.stderr)
        self.assertNotIn(TOKEN, r.stderr)
        r = self.calibrate("--token", TOKEN, "--activate")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = logn("stats", "rollback", *self.mtls())
        self.assertIn("UNAUTHENTICATED", r.stderr)
        # Reads and Detect are open.
        r = logn("stats", "list", *self.mtls())
        self.assertEqual(r.returncode, 0, r.stderr)
        image = os.path.join(ARGS.data, "val", sorted(os.listdir(os.path.join(ARGS.data, "val")))[0])
        r = logn("detect", "--json", *self.mtls(), image)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"version":1', r.stdout)

    def test_tls_without_client_certificates(self):
        server = LognServer(ARGS.server_binary, ARGS.model, os.path.join(self.dir, "tls"),
                            extra_args=[f"--tls_cert={self.dir}/server.pem",
                                        f"--tls_key={self.dir}/server.key"])
        with server:
            r = logn("health", "--server", server.address, "--tls-ca", self.ca)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = logn("health", "--server", server.address, "--retries", "1", "--deadline", "5")
            self.assertEqual(r.returncode, 1)

    def test_bad_security_flags_stop_the_server_with_a_reason(self):
        cases = [
            ([f"--tls_cert={self.dir}/server.pem"], "--tls_cert and --tls_key go together"),
            ([f"--tls_client_ca={self.ca}"], "--tls_client_ca needs --tls_cert"),
            ([f"--tls_cert={self.dir}/nope.pem", f"--tls_key={self.dir}/server.key"], "nope.pem"),
            ([f"--admin_token_file={self.dir}/missing"], "missing"),
            (["--require_token_for_detect"], "--admin_token_file"),
        ]
        empty = os.path.join(self.dir, "empty-token")
        open(empty, "w").close()
        cases.append(([f"--admin_token_file={empty}"], "is empty"))
        for extra, reason in cases:
            with self.subTest(extra=extra):
                r = subprocess.run([ARGS.server_binary, "--listen=127.0.0.1:0",
                                    "--metrics_listen=", f"--model={ARGS.model}",
                                    f"--store=sqlite://{self.dir}/unused.db", *extra],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(reason, r.stderr)


def set_args(args) -> None:
    global ARGS
    ARGS = args


if __name__ == "__main__":
    sys.exit(run_unittests(("--server-binary", "--logn", "--model", "--data", "--work-dir"), set_args))
