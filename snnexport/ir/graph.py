"""The IR graph: named nodes + directed edges (as NIR), shape-checked when built.

Every node takes exactly one input (the networks in scope are chains; a node with two inputs
is rejected by `order`, naming it). Node names are module paths of the source model, so an
error or a parity report points at the layer the user knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .nodes import Input, IRError, Node, Shape


@dataclass(eq=False)
class Graph:
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.shapes()  # fail early on a malformed graph

    @classmethod
    def chain(cls, named: list[tuple[str, Node]], metadata: dict | None = None) -> Graph:
        names = [n for n, _ in named]
        if len(set(names)) != len(names):
            raise IRError(f"duplicate node names in {names}")
        return cls(dict(named), list(zip(names[:-1], names[1:], strict=True)), metadata or {})

    def order(self) -> list[str]:
        """Nodes from the input to the output; checks that the graph is one chain."""
        for a, b in self.edges:
            for n in (a, b):
                if n not in self.nodes:
                    raise IRError(f"edge ({a} -> {b}) names unknown node {n!r}")
        inputs = [n for n, node in self.nodes.items() if isinstance(node, Input)]
        if len(inputs) != 1:
            raise IRError(f"the graph needs exactly one Input node, found {inputs}")
        nxt: dict[str, str] = {}
        seen_dst: set[str] = set()
        for a, b in self.edges:
            if a in nxt:
                raise IRError(f"node {a!r} feeds two nodes ({nxt[a]!r}, {b!r}); only chains are "
                              "supported")
            if b in seen_dst:
                raise IRError(f"node {b!r} has two inputs; only chains are supported")
            nxt[a] = b
            seen_dst.add(b)
        out, cur = [inputs[0]], inputs[0]
        while cur in nxt:
            cur = nxt[cur]
            if cur in out:
                raise IRError(f"cycle through node {cur!r}")
            out.append(cur)
        if len(out) != len(self.nodes):
            loose = sorted(set(self.nodes) - set(out))
            raise IRError(f"nodes not connected to the input: {loose}")
        return out

    def shapes(self) -> dict[str, Shape]:
        """Per-sample output shape of every node; raises IRError naming a node that does not fit."""
        shapes: dict[str, Shape] = {}
        prev: Shape | None = None
        for name in self.order():
            node = self.nodes[name]
            try:
                prev = tuple(node.shape) if isinstance(node, Input) else node.out_shape(prev)
            except IRError as e:
                raise IRError(f"node {name!r} ({type(node).__name__}): {e}") from None
            shapes[name] = tuple(int(s) for s in prev)
        return shapes

    def ordered(self) -> list[tuple[str, Node]]:
        return [(n, self.nodes[n]) for n in self.order()]

    def replace(self, named: list[tuple[str, Node]]) -> Graph:
        """A new chain with the same metadata (what passes return)."""
        return Graph.chain(named, dict(self.metadata))
