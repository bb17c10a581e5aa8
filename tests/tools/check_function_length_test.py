#!/usr/bin/env python3
"""The function-length checker finds definitions at namespace and class scope, and only them."""
import pathlib
import subprocess
import sys
import tempfile

CHECKER = pathlib.Path(__file__).resolve().parents[2] / "tools" / "check_function_length.py"

SOURCE = """
namespace logn {
namespace {
// a comment with { braces } that must not count
int Short(int x) { return x + 1; }
}  // namespace

class Widget : public Base {
 public:
  Widget(int a) : a_(a), b_{2} {
%(ctor)s
  }
  int Method() const override {
    auto lambda = [](int y) {
      return y;
    };
    if (a_ > 0) {
      return lambda(a_);
    }
    return "}";
  }
 private:
  int a_;
};

std::vector<int> Long(const std::string& s) {
%(body)s
  return {};
}
constexpr int kTable[] = {1, 2, 3};
}  // namespace logn
"""


def run(text, *args):
    with tempfile.TemporaryDirectory() as d:
        (pathlib.Path(d) / "sample.cc").write_text(text)
        (pathlib.Path(d) / "sample_test.cc").write_text(text)  # tests are skipped
        out = subprocess.run([sys.executable, str(CHECKER), *args, d], capture_output=True, text=True)
        return out.returncode, out.stdout


def main():
    body = "\n".join(f"  int v{i} = {i};" for i in range(90))
    ctor = "\n".join(f"    c{i}();" for i in range(5))
    code, out = run(SOURCE % {"body": body, "ctor": ctor}, "--max", "80")
    assert code == 1, out
    assert "   93  " in out and "sample.cc:30-122  Long" in out, out
    assert "4 functions, 1 longer than 80 lines" in out, out  # Short, Widget, Method, Long
    code, out = run(SOURCE % {"body": "", "ctor": ""}, "--max", "80", "--top", "10")
    assert code == 0, out
    for name in ("Short", "Widget", "Method", "Long"):
        assert name in out, (name, out)
    assert "sample_test.cc" not in out and "lambda" not in out, out
    print("check_function_length: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
