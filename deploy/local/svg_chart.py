"""Charts as plain SVG for the measuring scripts (the demo's timeline, the scale-down
benchmark's runs): panels of step lines and horizontal bars on a shared time axis, with
the Python standard library only, so a fresh machine draws them without installing
anything. A chart is drawn by the command that measured its data, never by hand.
"""

import math
from xml.sax.saxutils import escape

# Distinguishable on white and for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
FONT = 'font-family="sans-serif" font-size="11"'


def nice_step(span, ticks=6):
    """A round tick step (1, 2 or 5 x 10^n) giving about `ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def label(value):
    return f"{value:g}"


class Panel:
    """One plot area: x is time in seconds (shared by the chart), y its own scale."""

    def __init__(self, title, y_max, height=150, integer=False, y_ticks=True):
        self.title = title
        self.y_ticks = y_ticks
        self.y_max = max(y_max, 1)
        self.height = height
        self.integer = integer
        self.items = []  # (kind, data)

    def step(self, points, color, name, dashed=False):
        """A value held until the next point: [(t, value), ...] sorted by t."""
        self.items.append(("step", (points, color, name, dashed)))

    def bar(self, row, start, end, color, name, note=""):
        """A horizontal bar on row `row` (0 at the top) from start to end seconds."""
        self.items.append(("bar", (row, start, end, color, name, note)))

    def marker(self, t, text):
        """A vertical dotted line at t, labelled."""
        self.items.append(("marker", (t, text)))


class Chart:
    def __init__(self, title, subtitle, x_max, x_min=0.0, width=880, legend_columns=4):
        self.title = title
        self.subtitle = subtitle
        self.x_min = min(x_min, 0.0)
        self.x_max = max(x_max, self.x_min + 1)
        self.legend_columns = legend_columns
        self.width = width
        self.panels = []

    def panel(self, *args, **kwargs):
        panel = Panel(*args, **kwargs)
        self.panels.append(panel)
        return panel

    def render(self):
        left, right, top = 56, 16, 66
        plot_w = self.width - left - right
        out = []
        y = top
        legend = {}
        for panel in self.panels:
            out += self._panel(panel, left, y, plot_w, legend)
            y += panel.height + 44
        height = y + 18 + 16 * math.ceil(len(legend) / self.legend_columns)
        out += self._legend(legend, left, y, plot_w // self.legend_columns)
        head = [
            (
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{height}" '
                f'viewBox="0 0 {self.width} {height}" {FONT}>'
            ),
            f'<rect width="{self.width}" height="{height}" fill="white"/>',
            f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(self.title)}</text>',
            f'<text x="{left}" y="36" fill="#555">{escape(self.subtitle)}</text>',
        ]
        return "\n".join(head + out + ["</svg>"]) + "\n"

    def _panel(self, panel, x0, y0, w, legend):
        h = panel.height

        span = self.x_max - self.x_min

        def sx(t):
            return x0 + w * (min(max(t, self.x_min), self.x_max) - self.x_min) / span

        def sy(v):
            return y0 + h - h * min(max(v, 0.0), panel.y_max) / panel.y_max

        out = [f'<text x="{x0}" y="{y0 - 6}" font-weight="bold">{escape(panel.title)}</text>']
        step = nice_step(panel.y_max, 4)
        if panel.integer:
            step = max(1.0, round(step))
        v = 0.0 if panel.y_ticks else math.inf
        while v <= panel.y_max + 1e-9:
            out.append(
                f'<line x1="{x0}" x2="{x0 + w}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
            )
            out.append(
                f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{label(v)}</text>'
            )
            v += step
        t_step = nice_step(span, 10)
        t = math.ceil(self.x_min / t_step) * t_step
        while t <= self.x_max + 1e-9:
            out.append(
                f'<text x="{sx(t):.1f}" y="{y0 + h + 14}" text-anchor="middle">{label(t)}</text>'
            )
            t += t_step
        out.append(
            f'<text x="{x0 + w}" y="{y0 + h + 28}" text-anchor="end" fill="#555">seconds</text>'
        )
        out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
        for kind, data in panel.items:
            if kind == "step":
                points, color, name, dashed = data
                legend[name] = (color, dashed, "line")
                out.append(self._step(points, color, dashed, sx, sy))
            elif kind == "bar":
                row, start, end, color, name, note = data
                legend[name] = (color, False, "bar")
                out.append(self._bar(row, start, end, color, note, sx, y0))
            elif kind == "marker":
                t, text = data
                out.append(
                    f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{y0}" y2="{y0 + h}" '
                    f'stroke="#444" stroke-dasharray="2,3"/>'
                )
                out.append(
                    f'<text x="{sx(t) + 3:.1f}" y="{y0 + 11}" fill="#444">{escape(text)}</text>'
                )
        return out

    @staticmethod
    def _step(points, color, dashed, sx, sy):
        path = []
        previous = None
        for t, v in points:
            if previous is None:
                path.append(f"M{sx(t):.1f},{sy(v):.1f}")
            else:
                path.append(f"H{sx(t):.1f}V{sy(v):.1f}")
            previous = v
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        return f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>'

    @staticmethod
    def _bar(row, start, end, color, note, sx, y0):
        y = y0 + 6 + row * 16
        width = max(sx(end) - sx(start), 1.0)
        out = f'<rect x="{sx(start):.1f}" y="{y}" width="{width:.1f}" height="11" fill="{color}"/>'
        if note:
            out += f'<text x="{sx(end) + 4:.1f}" y="{y + 9}">{escape(note)}</text>'
        return out

    def _legend(self, legend, x0, y0, column_w):
        out = []
        for i, (name, (color, dashed, kind)) in enumerate(legend.items()):
            x = x0 + (i % self.legend_columns) * column_w
            y = y0 + 16 * (i // self.legend_columns)
            if kind == "bar":
                out.append(f'<rect x="{x}" y="{y - 8}" width="22" height="9" fill="{color}"/>')
            else:
                dash = ' stroke-dasharray="5,3"' if dashed else ""
                out.append(
                    f'<line x1="{x}" x2="{x + 22}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                    f'stroke-width="1.6"{dash}/>'
                )
            out.append(f'<text x="{x + 28}" y="{y}">{escape(name)}</text>')
        return out
