"""How results show themselves: each result is a list of blocks (a titled table, or a line of
text), drawn as rich tables in a terminal or as Markdown in a notebook or a CI summary. The results
build the blocks (`Artifact.blocks()`); this module only draws them, so the terminal and Markdown
always show the same numbers. rich is imported when something is drawn."""

import re
from dataclasses import dataclass, field

MARKUP = re.compile(r"\[/?(?:bold|dim|green|red)\]")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str | None = None
    left: set[str] = field(default_factory=set)  # columns aligned left; the others hold numbers
    header: bool = True  # False: a two-column key/value table
    compact: bool = False  # a light box, no edge padding: wide result tables


Block = Table | str


class View:
    """Anything a command shows: `to_dict()` for --json, `blocks()` drawn for the terminal (rich
    calls `__rich__`) or as Markdown (`to_markdown()`, also what notebooks display), `notes()`."""

    def to_dict(self) -> dict:
        raise NotImplementedError

    def blocks(self) -> list[Block]:
        raise NotImplementedError

    def notes(self) -> list[str]:
        return []

    def __rich__(self):
        return to_rich(self.blocks())

    def to_markdown(self) -> str:
        return to_markdown(self.blocks())

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def key_values(title: str, pairs: list[tuple[str, str]]) -> Table:
    return Table(title, ["", ""], [list(pair) for pair in pairs], header=False)


def plain(text: str) -> str:
    return MARKUP.sub("", text)


def to_rich(blocks: list[Block]):
    from rich import box
    from rich.console import Group
    from rich.table import Table as RichTable

    drawn = []
    for block in blocks:
        if isinstance(block, str):
            drawn.append(block)
            continue
        table = RichTable(
            title=block.title,
            caption=block.caption,
            show_header=block.header,
            title_justify="left",
            caption_justify="left",
            **({"box": box.SIMPLE_HEAD, "pad_edge": False, "collapse_padding": True} if block.compact else {}),
        )
        for index, column in enumerate(block.columns):
            if not block.header:
                table.add_column(style="bold" if index == 0 else None, justify="left" if index == 0 else "right")
            else:
                left = column in block.left or index == 0
                table.add_column(column, justify="left" if left else "right", no_wrap=block.compact)
        for row in block.rows:
            table.add_row(*row)
        drawn.append(table)
    return Group(*drawn)


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(plain(block))
            continue
        lines = [f"**{plain(block.title)}**", ""]
        columns = [plain(c).replace("\n", " ") for c in block.columns] if block.header else ["", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append(
            "|" + "|".join(":---" if i == 0 or c in block.left else "---:" for i, c in enumerate(block.columns)) + "|"
        )
        for row in block.rows:
            lines.append("| " + " | ".join(plain(cell).replace("|", "\\|") for cell in row) + " |")
        if block.caption:
            lines += ["", plain(block.caption)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;
font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}
img{max-width:100%}.caption{font-size:12px;color:#555}"""


def html_page(title: str, body: str) -> str:
    """A stage's report.html: one self-contained page (plots inlined by the caller)."""
    import html

    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style>\n</head><body>{body}</body></html>\n"
    )


def to_html(blocks: list[Block]) -> str:
    """The same blocks as HTML (report.html shows what the terminal shows); colour markup becomes
    spans."""
    import html

    def cell(text: str) -> str:
        text = html.escape(text).replace("\n", "<br>")
        for tag, style in (
            ("bold", "font-weight:bold"),
            ("dim", "color:#777"),
            ("green", "color:#2a7"),
            ("red", "color:#c33"),
        ):
            text = text.replace(f"[{tag}]", f'<span style="{style}">').replace(f"[/{tag}]", "</span>")
        return text

    parts = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(f"<p>{cell(block)}</p>")
            continue
        head = "".join(f"<th>{cell(c)}</th>" for c in block.columns) if block.header else ""
        body = "".join("<tr>" + "".join(f"<td>{cell(value)}</td>" for value in row) + "</tr>" for row in block.rows)
        caption = f"<p class=caption>{cell(block.caption)}</p>" if block.caption else ""
        parts.append(
            f"<h3>{cell(block.title)}</h3><table>{f'<thead><tr>{head}</tr></thead>' if head else ''}"
            f"<tbody>{body}</tbody></table>{caption}"
        )
    return "\n".join(parts)


def number(value) -> str:
    """A table cell for a number; blank for None (not applicable), n/a for NaN."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:,.4f}"
    return f"{value:,}"
