"""The pieces every section of the HTML report (declip_plugin/report.py) is made of: tables, images inlined as
``data:`` URIs, notes. A producer (the protocol, a robustness sweep) renders its own section with them."""
import base64
import html


def data_uri(png_or_jpeg_bytes, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(png_or_jpeg_bytes).decode("ascii")


def img_tag(path_or_bytes, alt, mime="image/png", width=None):
    """An ``<img>`` holding the image (a file's path, or its bytes) itself."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    w = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(data, mime)}" alt="{html.escape(alt)}"{w}>'


def table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figures(paths):
    """The images ``paths`` side by side (their file names as alt text)."""
    import os

    return '<div class="figs">' + "".join(img_tag(p, os.path.basename(p)) for p in paths) + "</div>"


def note(text):
    return f'<p class="note">{html.escape(text)}</p>'
