"""Fail if the built book would load anything from the network.

Scans every HTML file under the build directory (default ``_build/html``) for
elements that *load* a remote resource (``<script src>``, ``<img src>``,
``<iframe src>``, ``<source src>``, ``<link href>`` other than plain hyperlinks
such as rel="canonical"), and every CSS file for ``url(http…)`` and remote
``@import``. Ordinary ``<a href="https://…">`` links are fine: they load
nothing until clicked.

Usage: python tools/check_offline.py [_build/html]
"""
from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
LOADING_ATTRS = {"script": "src", "img": "src", "iframe": "src", "source": "src",
                 "embed": "src", "video": "src", "audio": "src", "object": "data"}
LINK_RELS_THAT_DONT_LOAD = {"canonical", "alternate", "author", "license", "help", "next",
                            "prev", "search", "index", "bookmark", "external", "me"}
CSS_REMOTE = re.compile(r"""(url\(\s*['"]?\s*(https?:)?//[^)]*\)|@import\s+['"](https?:)?//[^'"]*['"])""", re.I)


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hits: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag in LOADING_ATTRS and REMOTE.match(a.get(LOADING_ATTRS[tag], "")):
            self.hits.append(f"<{tag} {LOADING_ATTRS[tag]}=\"{a[LOADING_ATTRS[tag]]}\">")
        if tag == "img" and any(REMOTE.match(u.split()[0]) for u in a.get("srcset", "").split(",") if u.strip()):
            self.hits.append(f"<img srcset=\"{a['srcset']}\">")
        if tag == "link" and REMOTE.match(a.get("href", "")):
            rels = set(a.get("rel", "").lower().split())
            if not rels or not rels <= LINK_RELS_THAT_DONT_LOAD:
                self.hits.append(f"<link rel=\"{a.get('rel', '')}\" href=\"{a['href']}\">")
        if tag == "style":
            self._in_style = True
        if CSS_REMOTE.search(a.get("style", "")):
            self.hits.append(f"<{tag} style=\"{a['style']}\">")

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.hits.extend(m.group(0) for m in CSS_REMOTE.finditer(data))


def remote_loads(html_dir: Path) -> dict[Path, list[str]]:
    """Map each offending file under ``html_dir`` to the remote loads found in it."""
    found: dict[Path, list[str]] = {}
    for path in sorted(html_dir.rglob("*.html")):
        finder = _Finder()
        finder.feed(path.read_text(encoding="utf-8", errors="replace"))
        if finder.hits:
            found[path] = finder.hits
    for path in sorted(html_dir.rglob("*.css")):
        text = path.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments load nothing
        hits = [m.group(0) for m in CSS_REMOTE.finditer(text)]
        if hits:
            found[path] = hits
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    html_dir = Path(args[0] if args else "_build/html")
    if not (html_dir / "index.html").is_file():
        print(f"check_offline: no built book at {html_dir} (run `make book`)", file=sys.stderr)
        return 2
    found = remote_loads(html_dir)
    for path, hits in found.items():
        for h in hits:
            print(f"{path}: remote load: {h[:200]}", file=sys.stderr)
    if found:
        print(f"check_offline: {sum(map(len, found.values()))} remote load(s) in {len(found)} file(s)",
              file=sys.stderr)
        return 1
    n = sum(1 for _ in html_dir.rglob("*.html"))
    print(f"check_offline: {n} HTML files, nothing loads from the network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
