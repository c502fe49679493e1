"""The documentation holds: every relative link and image of README.md and docs/ points at a file that exists (and
at a heading of it, for ``page.md#anchor``), and every ``resnet ...`` command shown in a fenced code block is accepted
by the real command-line parser. Nothing is run: the commands are only parsed."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from resnet.cli import COMMANDS, build_parser, glue_dash_values

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced, marker = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and (not fenced or m.group(1) == marker):
            fenced, marker = not fenced, m.group(1)
            continue
        if not fenced:
            out.append((number, line))
    return out


def code_blocks(text: str) -> list[list[tuple[int, str]]]:
    """The lines of every fenced code block, with their line numbers."""
    blocks, current, marker = [], None, ""
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and (current is None or m.group(1) == marker):
            if current is None:
                current, marker = [], m.group(1)
            else:
                blocks.append(current)
                current = None
            continue
        if current is not None:
            current.append((number, line))
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, then lowercase, every character that is not a
    letter, digit, space, hyphen or underscore dropped, and each space made a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()  # inline HTML tags
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page has: its headings' slugs (a repeated slug gets -1, -2, ... as on GitHub) and explicit
    ``<a id=...>`` / ``<a name=...>`` anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found |= set(HTML_ANCHOR.findall(line))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link or image and HTML src/href outside code."""
    out = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        out += [(number, t) for t in MD_LINK.findall(line)]
        out += [(number, t) for t in HTML_SRC.findall(line)]
    return out


def broken_links(path: Path) -> list[str]:
    wrong = []
    for number, target in links(path):
        if target.lower().startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{rel(path)}:{number}: {target}"
        if not dest.exists():
            wrong.append(f"{where} (no such file: {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            wrong.append(f"{where} (no heading with the anchor #{anchor} in {rel(dest)})")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_and_images_resolve(page):
    wrong = broken_links(page)
    assert not wrong, "links that lead nowhere:\n" + "\n".join(wrong)


def test_the_link_checker_sees_what_is_wrong(tmp_path):
    """The checker itself: a missing file, a missing anchor and a missing image are found; GitHub's slugs match."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Budgets & `resume`\n\n## Budgets & `resume`\n")
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](other.md#budgets--resume) [dup](other.md#budgets--resume-1) "
                    "[self](#title) [web](https://example.com/x)\n\n[gone](missing.md) [bad](other.md#nope) "
                    "![pic](pic.png) <img src=\"nope.png\"> [here](#nowhere)\n\n```\n[in code](not-checked.md)\n```\n")
    wrong = broken_links(page)
    assert sorted(w.split(": ", 1)[1].split(" (")[0] for w in wrong) == sorted([
        "missing.md", "other.md#nope", "pic.png", "nope.png", "#nowhere"])
    assert slug("Look inside: Grad-CAM") == "look-inside-grad-cam"
    assert slug("The `report.html` page") == "the-reporthtml-page"


def commands_in(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line number, command as shown, argv after ``resnet``) of every ``resnet ...`` command in a fenced code block
    of ``path``: continuation lines joined, comments dropped, a pipe or ``&&`` ending the command."""
    found = []
    for block in code_blocks(path.read_text(encoding="utf-8")):
        joined: list[tuple[int, str]] = []
        carry: tuple[int, str] | None = None
        for number, line in block:
            if carry is not None:
                number, line = carry[0], carry[1] + " " + line.strip()
                carry = None
            if line.rstrip().endswith("\\"):
                carry = (number, line.rstrip()[:-1])
                continue
            joined.append((number, line))
        if carry is not None:
            joined.append(carry)
        for number, line in joined:
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            if not text.startswith("resnet ") and text != "resnet":
                continue  # comments, other programs (make, torchrun, python), output
            lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;<>")
            lexer.whitespace_split, lexer.commenters = True, "#"
            argv = []
            for token in lexer:
                if token and set(token) <= set("|&;<>"):
                    break
                argv.append(token)
            found.append((number, text.split(" #")[0].strip(), argv[1:]))
    return found


def parse_error(argv: list[str]) -> str | None:
    """None when ``resnet``'s parser accepts ``argv``; else what argparse said."""
    argv = glue_dash_values(argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    except SystemExit as exc:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit status {exc.code}"
    return None


README_COMMANDS = commands_in(README)


def test_readme_shows_commands():
    assert len(README_COMMANDS) >= 5, "README.md shows no `resnet ...` commands in code blocks"


@pytest.mark.parametrize("number,shown,argv", README_COMMANDS, ids=[f"README.md:{n}" for n, _, _ in README_COMMANDS])
def test_readme_command_is_accepted_by_the_parser(number, shown, argv):
    error = parse_error(argv)
    assert error is None, f"README.md:{number}: `{shown}` is not accepted: {error}"


DOCS_COMMANDS = [(rel(page), n, shown, argv) for page in sorted((ROOT / "docs").glob("*.md"))
                 for n, shown, argv in commands_in(page)]


@pytest.mark.parametrize("page,number,shown,argv", DOCS_COMMANDS, ids=[f"{p}:{n}" for p, n, _, _ in DOCS_COMMANDS])
def test_docs_command_is_accepted_by_the_parser(page, number, shown, argv):
    """The same for the commands of the docs/ pages."""
    error = parse_error(argv)
    assert error is None, f"{page}:{number}: `{shown}` is not accepted: {error}"


def test_readme_lists_every_command():
    """Every command of `resnet --help` appears in README.md, as `resnet NAME`."""
    text = README.read_text(encoding="utf-8")
    missing = [name for name in COMMANDS if not re.search(rf"`resnet {re.escape(name)}\b", text)]
    assert not missing, f"README.md does not show: {', '.join(missing)}"


def test_the_command_checker_parses_and_refuses():
    assert parse_error(["models"]) is None
    assert parse_error(["train", "--budget", "10m", "--set", "data.flip=false"]) is None
    assert "unrecognized arguments" in (parse_error(["eval", "RUN", "--no-such-option"]) or "")
    assert "invalid choice" in (parse_error(["no-such-command"]) or "")


def test_the_architecture_page_names_every_module():
    """docs/architecture.md's "Every module" list covers the package: a new module is placed in the picture."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "src" / "resnet"
    missing = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" or "__pycache__" in path.parts:
            continue
        name = path.name if path.parent == package else f"{path.parent.name}/{path.name}"
        if f"`{path.name}`" not in page and f"`{name}`" not in page and path.name not in page:
            missing.append(str(path.relative_to(package)))
    assert missing == [], f"modules missing from docs/architecture.md: {missing}"
