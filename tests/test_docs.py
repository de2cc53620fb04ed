"""The documentation works: every ```python snippet of README.md and docs/*.md runs, every relative link
resolves (anchors included), and the MkDocs site builds with warnings as errors.

A snippet is run in a fresh temporary working folder beside a `shared` link to the checkout's `../shared/`,
so the snippets' `../shared/data/...` paths resolve as they do beside a checkout (a snippet naming a file
that is not there is skipped, saying which). The line right above a snippet may say how to treat it:

    <!-- not run: reason -->    never run (a reason is required; keep these few)
    <!-- slow: reason -->       run only outside the quick lane (`@pytest.mark.slow`)
"""

import os
import re
import shutil
import subprocess
import sys
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
MAX_NOT_RUN = 4  # snippets that cannot run here: keep them few

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(not run|slow)\s*:\s*(.*?)\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SHARED_PATH = re.compile(r"\.\./shared/[^\s\"'`)#]+")


def markdown_files():
    names = sorted(name for name in os.listdir(DOCS) if name.endswith(".md"))
    return [os.path.join(ROOT, "README.md")] + [os.path.join(DOCS, name) for name in names]


def relative(path):
    return os.path.relpath(path, ROOT)


def blocks(path):
    """(language, first line number, code, marker, reason) of every fenced block of a Markdown file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found, index = [], 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start, language = index, match.group(1)
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        above = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(above.strip())
        found.append((language, start + 1, "\n".join(lines[start + 1:end]),
                      marker.group(1) if marker else None, marker.group(2) if marker else None))
        index = end + 1
    return found


def snippets():
    params = []
    for path in markdown_files():
        for language, line, code, marker, reason in blocks(path):
            if language != "python":
                continue
            name = f"{relative(path)}:{line}"
            marks = [pytest.mark.slow] if marker == "slow" else []
            params.append(pytest.param(path, line, code, marker, reason, id=name, marks=marks))
    return params


SNIPPETS = snippets()


def test_snippets_are_found_and_few_are_not_run():
    assert len(SNIPPETS) >= 3
    not_run = [p for p in SNIPPETS if p.values[3] == "not run"]
    assert len(not_run) <= MAX_NOT_RUN, [p.id for p in not_run]
    for p in SNIPPETS:
        if p.values[3]:
            assert p.values[4], f"{p.id}: a '{p.values[3]}' comment needs a reason"


@pytest.mark.parametrize("path, line, code, marker, reason", SNIPPETS)
def test_snippet_runs(path, line, code, marker, reason, tmp_path, monkeypatch):
    if marker == "not run":
        pytest.skip(f"not run: {reason}")
    work = tmp_path / "work"
    work.mkdir()
    if os.path.isdir(SHARED):
        os.symlink(SHARED, tmp_path / "shared")
    missing = [p for p in SHARED_PATH.findall(code) if not os.path.exists(os.path.join(work, p))]
    if missing:
        pytest.skip(f"needs {missing[0]} (not beside this checkout)")
    monkeypatch.chdir(work)
    namespace = {"__name__": "__main__"}
    exec(compile(code, f"{relative(path)}:{line}", "exec"), namespace)  # noqa: S102 - the docs' own snippets


def slug(text):
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found, fence = set(), False
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        match = None if fence else HEADING.match(line)
        if match:
            found.add(slug(match.group(2)))
    return found


def links(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    fence = False
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            yield number, target


def test_relative_links_resolve():
    problems, count = [], 0
    for path in markdown_files():
        for number, target in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            count += 1
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            where = f"{relative(path)}:{number}: {target}"
            if not os.path.exists(resolved):
                problems.append(f"{where}: no such file")
            elif path.startswith(DOCS + os.sep) and not resolved.startswith(DOCS + os.sep):
                problems.append(f"{where}: outside docs/ (the site cannot link to it; name it in `code` instead)")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                problems.append(f"{where}: no heading with the anchor #{anchor}")
    assert count >= 10
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_in_the_nav():
    import yaml

    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    listed = {next(iter(item.values())) for item in config["nav"]}
    pages = {name for name in os.listdir(DOCS) if name.endswith(".md")}
    assert listed == pages


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e \".[test]\")")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.isfile(tmp_path / "site" / "index.html")
    shutil.rmtree(tmp_path / "site")
