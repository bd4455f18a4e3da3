"""One helper for figures a reader can play with: :func:`explore`.

A notebook cell writes one drawing function, ``draw(fig, **params)``, that
builds a matplotlib figure for a given set of parameter values, and names a
control for each parameter::

    explore(draw, {"c": FloatSlider(0.5, min=0, max=2), "method": Dropdown(...)},
            animate="c", frames=np.linspace(0, 2, 30))

Where a Jupyter kernel is live, :func:`explore` returns an ``ipywidgets``
widget: moving a control re-runs ``draw`` with the new values.

A static page has no kernel, so sliders there would move without redrawing
anything. When the book is built (the build sets ``SSMBOOK_BUILD=1``), or
when ipywidgets is missing, :func:`explore` instead returns an animation:
``draw`` is called once per value in ``frames`` for the parameter named by
``animate`` (the others stay at their controls' values), and the frames are
embedded as a self-contained HTML player (``FuncAnimation.to_jshtml``) with
play, step and scrub buttons, which works offline.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

#: Environment variable the book build sets to ask for animations instead of widgets.
BUILD_ENV = "SSMBOOK_BUILD"

#: Refuse to embed animations larger than this (bytes of HTML); a page should stay light.
MAX_HTML_BYTES = 8 * 2**20


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def static_mode() -> bool:
    """True when :func:`explore` will return an animation rather than a widget."""
    return os.environ.get(BUILD_ENV, "0") not in ("", "0") or not _widgets_available()


def _initial_values(controls: Mapping[str, Any]) -> dict:
    """Each control's current value (a bare value, as ipywidgets allows, stands for itself)."""
    return {name: getattr(ctrl, "value", ctrl) for name, ctrl in controls.items()}


def explore(draw: Callable[..., Any], controls: Mapping[str, Any], *,
            animate: str | None = None, frames: Iterable | None = None,
            figsize: tuple[float, float] = (8.0, 3.2), dpi: int = 100,
            interval: int = 150, loop: bool = True):
    """A live widget in a kernel, a precomputed animation in the built book.

    Args:
        draw: ``draw(fig, **params)`` draws the whole figure for one set of
            parameter values on an empty ``fig`` (it adds its own axes).
        controls: parameter name → ipywidgets control (``FloatSlider``,
            ``Dropdown``, ...); wrap a value the reader should not change in
            ``ipywidgets.fixed``.
        animate: the parameter the animation sweeps (the static mode only):
            any parameter of ``draw``, a slider's or a fixed one (e.g. a time
            cursor ``t``).
        frames: the values ``animate`` takes, one per frame. Keep it to about
            30–40 frames: each is embedded as a PNG.
        figsize, dpi: the figure's size in inches and resolution.
        interval: milliseconds between frames when the animation plays.
        loop: whether the player starts in "loop" mode (else "once").

    Returns:
        ``ipywidgets.interactive`` (live), or ``IPython.display.HTML`` holding
        the animation player (static mode: ``SSMBOOK_BUILD=1`` or no
        ipywidgets).
    """
    import matplotlib.pyplot as plt

    if static_mode():
        if animate is None or frames is None:
            raise ValueError("the static (book) mode needs animate=<parameter name> and frames=[values]")
        if animate not in controls:
            raise ValueError(f"animate={animate!r} is not one of the controls {list(controls)}")
        from IPython.display import HTML
        from matplotlib.animation import FuncAnimation

        frames = list(frames)
        if not frames:
            raise ValueError("frames is empty")
        params = _initial_values(controls)
        fig = plt.figure(figsize=figsize, dpi=dpi)

        def update(value):
            fig.clear()
            draw(fig, **{**params, animate: value})
            return []

        try:
            anim = FuncAnimation(fig, update, frames=frames, interval=interval, blit=False,
                                 cache_frame_data=False)
            html = anim.to_jshtml(default_mode="loop" if loop else "once")
        finally:
            plt.close(fig)
        if len(html) > MAX_HTML_BYTES:
            raise ValueError(f"the animation is {len(html) / 2**20:.1f} MB of HTML; use fewer "
                             f"frames, a smaller figsize or a lower dpi (limit "
                             f"{MAX_HTML_BYTES / 2**20:.0f} MB)")
        return HTML(html)

    import ipywidgets
    from IPython.display import display

    def redraw(**params):
        fig = plt.figure(figsize=figsize, dpi=dpi)
        try:
            draw(fig, **params)
            display(fig)
        finally:
            plt.close(fig)   # shown once, through the widget's output area only

    return ipywidgets.interactive(redraw, **dict(controls))
