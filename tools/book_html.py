"""Sphinx extension: small fixes to the HTML pages so the book is offline and error-free.

1. Vendored copies for CDN links inside notebook outputs. matplotlib's
   ``FuncAnimation.to_jshtml()`` player, which the book uses for every
   animation, starts with ``<link rel="stylesheet" href="https://maxcdn.
   bootstrapcdn.com/font-awesome/4.4.0/css/font-awesome.min.css">`` for its
   button icons. Such URLs in a page body are rewritten to the copies that
   ``tools/fetch_vendor.sh`` puts under ``_vendor/`` (served from
   ``_static/``); the build fails if a vendored file is missing. Anything not
   listed here is left for ``tools/check_offline.py`` and the browser test.
2. No script twice. Jupyter Book runs sphinx-thebe's set-up twice, so every
   page got its inline ``const THEBE_JS_URL = …`` twice, and the second copy
   throws "Identifier 'THEBE_JS_URL' has already been declared" in the console.
   Identical script entries are dropped.

Loaded from _config.yml: ``sphinx: local_extensions: {book_html: tools/}``.
"""
from __future__ import annotations

import re
from pathlib import Path

from sphinx.errors import ExtensionError

# remote URL pattern -> path under _vendor/ (= under _static/ in the build)
LOCAL_COPIES = {
    re.compile(r"https?://[^\"'\s]+/font-awesome/4\.\d+\.\d+/css/font-awesome(?:\.min)?\.css"):
        "font-awesome/css/font-awesome.min.css",
}


def _check_vendored(app) -> None:
    for local in LOCAL_COPIES.values():
        if not any((Path(app.confdir, d) / local).is_file() for d in app.config.html_static_path):
            raise ExtensionError(
                f"book_html: {local} is not in html_static_path {app.config.html_static_path}; "
                f"run tools/fetch_vendor.sh")


def _fix_page(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if body:
        for pattern, local in LOCAL_COPIES.items():
            body = pattern.sub(context["pathto"](f"_static/{local}", 1), body)
        context["body"] = body

    scripts, seen = [], set()
    for js in context.get("script_files", []):
        # inline scripts come as filename None or "": the same script
        key = (getattr(js, "filename", None) or None,
               tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(js)
    context["script_files"] = scripts


def setup(app):
    app.connect("builder-inited", _check_vendored)
    app.connect("html-page-context", _fix_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
