#!/usr/bin/env python3
"""Lists C++ function definitions longer than a limit (issue 13: none over 80 lines outside tests).

    tools/check_function_length.py [--max 80] [--top N] DIR...

A function is a brace block at namespace or class scope whose head (the code since the previous
';', '{' or '}') ends in a parameter list: definitions of functions, methods, constructors and
operators. Its length counts the lines from the head's first line to the closing brace. Comments,
string and character literals are blanked before matching, so braces inside them do not count.
Files named *_test.cc, *_bench.cc and anything under a testing/ folder are skipped. Exits 1 when a
function is over the limit, printing each; --top prints the N longest whatever the limit.
"""
import argparse
import pathlib
import re
import sys

CONTROL = re.compile(r"^\s*(if|for|while|switch|catch|do|else|return|try)\b")
SCOPE = re.compile(r"\b(namespace|class|struct|union|enum)\b[^()]*$|\bextern\s*$")


def blank_comments_and_literals(text):
    """The text with comments and literals replaced by spaces (newlines kept)."""
    pattern = re.compile(
        r'//[^\n]*|/\*.*?\*/|R"(?P<d>[^(\s]*)\(.*?\)(?P=d)"|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
        re.S)
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def functions(path):
    """(name, first line, last line) of every function defined at namespace or class scope."""
    text = blank_comments_and_literals(path.read_text(errors="replace"))
    text = re.sub(r"^\s*#.*$", lambda m: " " * len(m.group(0)), text, flags=re.M)
    stack = []  # per open brace: 'scope', 'function' or 'other'
    head_start = 0
    found = []
    for i, ch in enumerate(text):
        if ch == ";":
            head_start = i + 1
        elif ch == "{":
            head = text[head_start:i]
            at_scope = all(entry[0] == "scope" for entry in stack)
            squashed = " ".join(head.split())
            if at_scope and re.search(r"\)\s*:[^{};]*[\w>]$", squashed):
                # A brace initializer in a constructor's initializer list (`b_{2}`): not a block.
                stack.append(("init",))
                continue
            if SCOPE.search(squashed):
                kind = "scope" if at_scope else "other"
            elif (at_scope and squashed.endswith((")", "const", "override", "final", "noexcept"))
                  or at_scope and re.search(r"\)\s*(const\s*)?(noexcept\s*)?(->\s*[\w:<>,\s*&]+)?$", squashed)
                  or at_scope and re.search(r"\)\s*:\s*[\w:]+\s*[({].*[)}]$", squashed)):
                kind = "function" if not CONTROL.match(squashed) and "=" not in squashed.split("(")[0] else "other"
            else:
                kind = "other"
            if kind == "function":
                first = text.count("\n", 0, head_start + len(head) - len(head.lstrip())) + 1
                name = re.sub(r"\s*\(.*", "", squashed).split()[-1] if squashed else "?"
                stack.append(("function", first, name))
            else:
                stack.append((kind,))
            head_start = i + 1
        elif ch == "}":
            if stack:
                top = stack.pop()
                if top[0] == "init":
                    continue
                if top[0] == "function":
                    last = text.count("\n", 0, i) + 1
                    found.append((top[2], top[1], last))
            head_start = i + 1
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--max", type=int, default=80)
    parser.add_argument("--top", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for d in args.dirs:
        for path in sorted(pathlib.Path(d).rglob("*")):
            if path.suffix not in (".cc", ".h", ".cpp") or "testing" in path.parts:
                continue
            if path.stem.endswith(("_test", "_bench")):
                continue
            for name, first, last in functions(path):
                rows.append((last - first + 1, f"{path}:{first}-{last}", name))
    rows.sort(reverse=True)
    over = [r for r in rows if r[0] > args.max]
    for length, where, name in (rows[:args.top] if args.top else over):
        print(f"{length:5d}  {where}  {name}")
    print(f"{len(rows)} functions, {len(over)} longer than {args.max} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
