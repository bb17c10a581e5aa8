"""Build step of the logn_serve package: the setuptools metadata is in pyproject.toml; this file
adds the generation of the logn.v1 stubs (logn_serve/_protogen.py) to `build_py`.

The protos are read from $LOGN_PROTO_DIR, else from the checkout's proto/ (../../proto). Build
directories go to a temporary directory, so `pip install client/python` leaves the source tree as
it was (no build/, no *.egg-info).
"""
import atexit
import importlib.util
import os
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _protogen():
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    spec = importlib.util.spec_from_file_location(
        "_logn_serve_protogen", os.path.join(HERE, "logn_serve", "_protogen.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    """build_py, then the generated stubs into the built package (into the source package for
    an editable install, where build_lib is not what gets imported)."""

    def run(self):
        super().run()
        protogen = _protogen()
        proto_dir = os.environ.get("LOGN_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")
        editable = getattr(self, "editable_mode", False)
        target = os.path.join(HERE if editable else self.build_lib, "logn_serve")
        modules = protogen.generate(target, proto_dir)
        print(f"logn_serve: generated {len(modules)} stub modules from "
              f"{os.path.normpath(proto_dir)} into {target}")


_scratch = tempfile.mkdtemp(prefix="logn_serve_build_")
atexit.register(shutil.rmtree, _scratch, True)

setup(
    cmdclass={"build_py": BuildPyWithStubs},
    options={"build": {"build_base": os.path.join(_scratch, "build")},
             "egg_info": {"egg_base": _scratch}},
)
