"""Draw a table as a Mermaid state diagram or a Graphviz DOT graph.

One edge per (from, to) pair, labelled with the events that take it (with the role when it is
not ``Both``); ``Any`` entries are drawn from every non-terminal state they apply to.
"""

from __future__ import annotations

from collections import defaultdict

from sessiond.table.model import ANY, Table


def _edges(table: Table) -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (role, state, event), entry in sorted(table.entries.items()):
        if entry.ignore is not None:
            continue
        sources = (
            [s for s, d in table.states.items() if not d.terminal] if state == ANY else [state]
        )
        label = event if role == "Both" else f"{role}: {event}"
        for src in sources:
            for alt in entry.alternatives:
                dst = alt.next or src
                if label not in edges[(src, dst)]:
                    edges[(src, dst)].append(label)
    return edges


def mermaid(table: Table) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {table.initial}"]
    for (src, dst), labels in _edges(table).items():
        lines.append(f"    {src} --> {dst}: {', '.join(labels)}")
    for name, state in table.states.items():
        if state.terminal:
            lines.append(f"    {name} --> [*]")
        if state.timeout is not None:
            lines.append(
                f"    note right of {name}: after {state.timeout.seconds:g}s {state.timeout.event}"
            )
    return "\n".join(lines) + "\n"


def dot(table: Table) -> str:
    lines = [
        f'digraph "{table.name}" {{',
        "    rankdir=LR;",
        "    node [shape=box, style=rounded];",
    ]
    lines.append(f'    "__start" [shape=point]; "__start" -> "{table.initial}";')
    for name, state in table.states.items():
        attrs = ["shape=doublecircle"] if state.terminal else []
        if state.timeout is not None:
            attrs.append(f'xlabel="{state.timeout.seconds:g}s: {state.timeout.event}"')
        if attrs:
            lines.append(f'    "{name}" [{", ".join(attrs)}];')
    for (src, dst), labels in _edges(table).items():
        text = "\\n".join(labels)
        lines.append(f'    "{src}" -> "{dst}" [label="{text}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
