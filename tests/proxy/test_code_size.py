"""Production code stays in pieces a reader can hold: no file over MAX_FILE_LINES lines and
no function over MAX_FUNCTION_LINES lines in proxy/, protocol/ and certs/ (fuzz targets are
test code and are not counted).

A file or function may be longer for a stated reason: it is then listed in ALLOWED with that
reason. An entry that no longer applies (the file or function shrank or went away) is an
error too, so the list only ever shrinks.

Functions are found by a brace-matching scan over the text with comments and literals blanked
out: a `{` outside any function whose head (the text since the previous `;`, `{` or `}`) ends
in a parameter list, optionally followed by qualifiers or a constructor's initializer list,
opens a function; everything up to its matching `}` (lambdas included) belongs to it. Class,
namespace and enum bodies are entered; brace initializers (`= {`) are skipped.
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRODUCTION = ("proxy", "protocol", "certs")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

RESTRUCTURED = "being restructured"

# "path" for a file, "path:Function" for a function (the name as written at its
# definition, qualified as there: "Server::Start"), or a prefix ending in "/" or "." for
# every file and function of the files it starts (a folder, a header and its source).
ALLOWED = {
    "proxy/config/settings.cc:Settings": (
        "one table, one row per key of the configuration: splitting it would scatter the "
        "keys a reader compares side by side"),
    "proxy/observe/metrics.cc:Metrics::Metrics": (
        "declares every metric family in one place, as the style asks of a component's "
        "metrics: the names, help texts and label sets read best side by side"),
}

SCOPE_HEAD = re.compile(
    r'^(?:template\s*<.*>\s*)?(?:(?:class|struct|union|enum(?:\s+class)?)\b[^()]*'
    r'|namespace\b.*|extern\s*"C"\s*)$', re.S)
CONTROL_HEAD = re.compile(r'^(?:if|for|while|switch|catch|do|else|try)\b')
FUNCTION_NAME = re.compile(r'((?:~?[A-Za-z_]\w*::)*~?(?:operator\s*\S+?|[A-Za-z_]\w*))\s*$')


def blank(text):
    """`text` with comments, preprocessor lines, string and character literals replaced by
    spaces, lines kept."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        at_line_start = i == 0 or text[i - 1] == "\n"
        if at_line_start and text[i:].lstrip(" \t").startswith("#"):
            # A preprocessor line (with its continuations) is no part of any head.
            end = i
            while True:
                end = text.find("\n", end)
                if end < 0 or text[end - 1] != "\\":
                    break
                end += 1
            end = n if end < 0 else end
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (
                text[i - 1].isalnum() or text[i - 1] == "_")):
            open_paren = text.find("(", i)
            delimiter = text[i + 2:open_paren]
            end = text.find(")" + delimiter + '"', open_paren)
            end = n if end < 0 else end + len(delimiter) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():
                out.append(c)  # a digit separator: 1'000'000
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def function_name(head):
    """The name of the function whose definition head this is, or None."""
    head = re.sub(r"\s+", " ", head).strip()
    if not head or CONTROL_HEAD.match(head) or SCOPE_HEAD.match(head):
        return None
    head = re.sub(r"\boperator\s*([^\w\s(]+|\(\))\s*(?=\()", "operator_", head)
    depth = 0
    for index, c in enumerate(head):
        if c in "<[":
            depth += 1
        elif c in ">]":
            depth = max(depth - 1, 0)
        elif c == "=" and depth == 0:
            return None  # `x = {`: a brace initializer
        elif c == "(" and depth == 0:
            match = FUNCTION_NAME.search(head[:index])
            if match is None or ")" not in head[index:]:
                return None
            name = match.group(1)
            if name.split("::")[-1] in ("return", "sizeof", "decltype", "alignof", "new"):
                return None
            return name
    return None


def functions(text):
    """(name, first line, line count) of every function defined in `text`."""
    code = blank(text)
    found = []
    # Open braces, innermost last: ("scope",) for a class or namespace body, ("function",
    # name, line), ("block",) inside a function, ("data",) for a brace initializer, and
    # ("member",) for a member's brace initializer in a constructor's initializer list.
    stack = []
    head_start = 0
    line = 1
    for index, c in enumerate(code):
        if c == "\n":
            line += 1
        elif c == "{":
            head = code[head_start:index]
            if any(entry[0] in ("function", "data") for entry in stack):
                stack.append(("block",))
            elif (re.search(r"\)[\w\s]*:(?!:)", head) and re.search(r"\w\s*$", head)
                  and function_name(head) is not None):
                stack.append(("member",))
                continue  # the head goes on to the constructor's body
            elif (name := function_name(head)) is not None:
                stack.append(("function", name, line))
            elif SCOPE_HEAD.match(re.sub(r"\s+", " ", head).strip()):
                stack.append(("scope",))
            else:
                stack.append(("data",))
            head_start = index + 1
        elif c == "}":
            entry = stack.pop() if stack else ("scope",)
            if entry[0] == "function":
                found.append((entry[1], entry[2], line - entry[2] + 1))
            if entry[0] != "member":
                head_start = index + 1
        elif c == ";":
            if not stack or stack[-1][0] == "scope":
                head_start = index + 1
        elif c == ":" and (not stack or stack[-1][0] == "scope"):
            # `public:` and friends end a head; `::` and an initializer list's `:` do not.
            if (code[head_start:index].strip() in ("public", "private", "protected")
                    and code[index + 1:index + 2] != ":"):
                head_start = index + 1
    return found


def production_files(root):
    for top in PRODUCTION:
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root)
            if path.suffix in (".h", ".cc") and "fuzz" not in relative.parts:
                yield relative.as_posix(), path


def allowance(key, allowed):
    """The entry of `allowed` that covers `key` ("path" or "path:Function"), or None."""
    if key in allowed:
        return key
    path = key.split(":", 1)[0]
    for entry in allowed:
        if entry.endswith(("/", ".")) and path.startswith(entry):
            return entry
    return None


def offenders(root, allowed):
    """Lines naming every file or function over its limit without a reason, and every
    reason that no longer applies."""
    found = []
    used = set()

    def check(key, over, message):
        if not over:
            return
        entry = allowance(key, allowed)
        if entry is None:
            found.append(message)
        else:
            used.add(entry)

    for relative, path in production_files(root):
        text = path.read_text()
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        check(relative, lines > MAX_FILE_LINES,
              f"{relative}: {lines} lines (limit {MAX_FILE_LINES})")
        for name, first, count in functions(text):
            check(f"{relative}:{name}", count > MAX_FUNCTION_LINES,
                  f"{relative}:{first}: {name} is {count} lines (limit {MAX_FUNCTION_LINES})")
    for key in sorted(set(allowed) - used):
        found.append(f"{key}: allowed ({allowed[key]}) but no longer over its limit; "
                     f"remove it from ALLOWED")
    return found


def test_production_files_and_functions_stay_within_their_limits():
    assert offenders(ROOT, ALLOWED) == []


def test_every_allowance_states_its_reason():
    assert all(reason.strip() for reason in ALLOWED.values())


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def body(lines):
    return "".join(f"  x += {i};\n" for i in range(lines))


def test_a_long_function_is_reported_with_its_name_and_line(tmp_path):
    write(tmp_path / "proxy/a/long.cc",
          "namespace sidecar::proxy {\nnamespace {\n\n"
          f"absl::Status Server::Start(int x) const {{\n{body(90)}}}\n\n"
          f"void Short() {{\n{body(10)}}}\n}}  // namespace\n}}\n")
    assert offenders(tmp_path, {}) == [
        "proxy/a/long.cc:4: Server::Start is 92 lines (limit 80)"]


def test_lambdas_braces_in_literals_and_initializers_count_with_their_function(tmp_path):
    text = ("class Worker {\n public:\n  Worker() : a_{1}, b_(2) {\n"
            "    auto f = [&] { return '}'; };  // }\n    const char* s = \"{{\";\n  }\n};\n"
            "constexpr int kTable[] = {\n" + "  1,\n" * 100 + "};\n"
            "static const auto kFn = [] {\n" + body(100) + "  return 1;\n}();\n")
    assert functions(text) == [("Worker", 3, 4)]


def test_a_long_file_is_reported_and_an_allowance_needs_to_apply(tmp_path):
    write(tmp_path / "certs/big.cc", "int x;\n" * 501)
    write(tmp_path / "protocol/fuzz/huge_fuzzer.cc", "int x;\n" * 900)
    write(tmp_path / "proxy/small.h", "int x;\n")
    assert offenders(tmp_path, {}) == ["certs/big.cc: 501 lines (limit 500)"]
    assert offenders(tmp_path, {"certs/big.cc": "why"}) == []
    assert offenders(tmp_path, {"certs/big.cc": "why", "proxy/small.h": "why"}) == [
        "proxy/small.h: allowed (why) but no longer over its limit; remove it from ALLOWED"]
    assert offenders(tmp_path, {"certs/": "why"}) == []
    assert offenders(tmp_path, {"certs/big.": "why", "proxy/": "why"}) == [
        "proxy/: allowed (why) but no longer over its limit; remove it from ALLOWED"]
