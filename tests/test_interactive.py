"""ssmlib.interactive.explore: an animation in the book build, a live widget in a kernel."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

ipywidgets = pytest.importorskip("ipywidgets")

from ssmlib import interactive  # noqa: E402


def make_draw(calls):
    def draw(fig, a, label):
        calls.append((a, label))
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, a], label=label)
        ax.set_ylim(-1, 3)
    return draw


def controls():
    return {"a": ipywidgets.FloatSlider(value=1.0, min=0.0, max=2.0),
            "label": ipywidgets.Dropdown(options=["x", "y"], value="x")}


def test_build_mode_returns_an_animation_player(monkeypatch):
    monkeypatch.setenv(interactive.BUILD_ENV, "1")
    assert interactive.static_mode()
    calls = []
    n_figs = len(plt.get_fignums())
    out = interactive.explore(make_draw(calls), controls(), animate="a", frames=[0.0, 1.0, 2.0],
                              figsize=(3, 2), dpi=50)
    from IPython.display import HTML
    assert isinstance(out, HTML)
    html = out.data
    assert "<script" in html and "Animation" in html          # matplotlib's JS player
    assert html.count("data:image/png;base64") == 3                 # one embedded PNG per frame
    assert [a for a, _ in calls][-3:] == [0.0, 1.0, 2.0]       # the swept parameter varies
    assert all(label == "x" for _, label in calls)             # the others stay at their values
    assert len(plt.get_fignums()) == n_figs                    # the figure was closed
    assert len(html) < interactive.MAX_HTML_BYTES


def test_build_mode_needs_a_sweep(monkeypatch):
    monkeypatch.setenv(interactive.BUILD_ENV, "1")
    with pytest.raises(ValueError, match="animate"):
        interactive.explore(make_draw([]), controls())
    with pytest.raises(ValueError, match="not one of the controls"):
        interactive.explore(make_draw([]), controls(), animate="b", frames=[1.0])


def test_kernel_mode_returns_a_widget_that_redraws(monkeypatch):
    monkeypatch.delenv(interactive.BUILD_ENV, raising=False)
    assert not interactive.static_mode()
    calls = []
    n_figs = len(plt.get_fignums())
    ctrls = controls()
    w = interactive.explore(make_draw(calls), ctrls, animate="a", frames=[0.0, 1.0])
    assert isinstance(w, ipywidgets.interactive)
    assert calls == [(1.0, "x")]                                # drawn once at creation
    ctrls["a"].value = 1.5                                      # a reader moves the slider
    assert calls[-1] == (1.5, "x")
    ctrls["label"].value = "y"                                  # ... and picks another option
    assert calls[-1] == (1.5, "y")
    assert len(plt.get_fignums()) == n_figs                    # no figure leaks
    assert set(w.kwargs) == {"a", "label"}


def test_env_zero_means_widget(monkeypatch):
    monkeypatch.setenv(interactive.BUILD_ENV, "0")
    assert not interactive.static_mode()


def test_no_ipywidgets_means_animation(monkeypatch):
    monkeypatch.delenv(interactive.BUILD_ENV, raising=False)
    monkeypatch.setattr(interactive, "_widgets_available", lambda: False)
    out = interactive.explore(make_draw([]), {"a": 1.0, "label": "x"}, animate="a", frames=[0.5, 1.0],
                              figsize=(3, 2), dpi=50)
    assert "data:image/png;base64" in out.data
