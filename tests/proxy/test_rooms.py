"""proxy/ is in rooms by concern and dependencies run one way (proxy/CMakeLists.txt).

Each room's README.md ends with a line "may include: a, b, ..." naming the rooms (and
protocol, certs) its files may include besides itself; every `#include "..."` of the
project in every file of a room must name one of them. protocol/ and certs/ never include
proxy/. A room missing from the tree or a folder without that line is an error too, so a
new room cannot slip in unchecked.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/(?:([a-z_]+)/)?[^"]+"', re.M)


def allowed_rooms(room_dir):
    readme = room_dir / "README.md"
    if not readme.exists():
        return None
    match = re.search(r"^may include:(.*)$", readme.read_text(), re.M)
    if not match:
        return None
    return {name.strip() for name in match.group(1).split(",") if name.strip()}


def violations(root):
    """Every include that crosses a room boundary the wrong way, as readable lines."""
    found = []
    proxy = root / "proxy"
    rooms = sorted(p for p in proxy.iterdir() if p.is_dir())
    for room in rooms:
        allowed = allowed_rooms(room)
        if allowed is None:
            found.append(f"proxy/{room.name}/README.md: no 'may include:' line")
            continue
        for source in sorted(room.rglob("*")):
            if source.suffix not in (".h", ".cc"):
                continue
            for top, sub in INCLUDE.findall(source.read_text()):
                target = sub if top == "proxy" else top
                if top == "proxy" and target == room.name:
                    continue
                if top not in ("proxy", "protocol", "certs"):
                    continue
                if target not in allowed:
                    found.append(f"{source.relative_to(root)} includes {top}/{sub or ''}... "
                                 f"(proxy/{room.name} may include: {', '.join(sorted(allowed))})")
    for lower in ("protocol", "certs"):
        for source in sorted((root / lower).rglob("*")):
            if source.suffix in (".h", ".cc") and re.search(r'#\s*include\s+"proxy/',
                                                             source.read_text()):
                found.append(f"{source.relative_to(root)} includes proxy/")
    loose = [p.name for p in proxy.iterdir() if p.suffix in (".h", ".cc")]
    if loose:
        found.append(f"proxy/ holds files outside any room: {', '.join(sorted(loose))}")
    return found


def test_the_tree_keeps_its_dependency_direction():
    assert violations(ROOT) == []


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_data_path_file_including_control_is_reported(tmp_path):
    write(tmp_path / "proxy/net/README.md", "may include: base\n")
    write(tmp_path / "proxy/control/README.md", "may include: net, base\n")
    write(tmp_path / "proxy/net/connection.cc", '#include "proxy/control/control_commands.h"\n')
    write(tmp_path / "proxy/control/server.cc", '#include "proxy/net/connection.h"\n')
    write(tmp_path / "protocol/wire.cc", '#include "proxy/base/mode.h"\n')
    write(tmp_path / "certs/pem.cc", "")
    found = violations(tmp_path)
    assert any("proxy/net/connection.cc includes proxy/control" in line for line in found), found
    assert any("protocol/wire.cc includes proxy/" in line for line in found), found
    assert not any("control/server.cc" in line for line in found), found


def test_a_room_without_its_rule_is_reported(tmp_path):
    write(tmp_path / "proxy/newroom/thing.cc", "")
    (tmp_path / "protocol").mkdir()
    (tmp_path / "certs").mkdir()
    assert violations(tmp_path) == ["proxy/newroom/README.md: no 'may include:' line"]
