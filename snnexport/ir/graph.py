"""The IR graph: named nodes + directed edges (as NIR), a directed acyclic graph, shape-checked
when built.

A node takes as many inputs as its type says (`Node.arity`: one for layers, two for the merge
nodes Add / SEWAnd / SEWIAnd); the edges into a node, in the order they stand in `edges`, are
its arguments in order (an edge may stand twice: Add(x, x) = 2x). Exactly one Input node; one
or more output nodes (nodes nothing consumes).
Node names are module paths of the source model, so an error or a parity report points at the
layer the user knows.

Rewrites never change a graph in place: `with_nodes` swaps nodes under the same names and
`splice` removes a one-input node, wiring its consumers to its input (what the folding passes
use, wherever the pattern sits).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from .nodes import Input, IRError, Node, Shape


@dataclass(eq=False)
class Graph:
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.edges = [(str(a), str(b)) for a, b in self.edges]
        self.shapes()  # fail early on a malformed graph

    @classmethod
    def chain(cls, named: list[tuple[str, Node]], metadata: dict | None = None) -> Graph:
        names = [n for n, _ in named]
        if len(set(names)) != len(names):
            raise IRError(f"duplicate node names in {names}")
        return cls(dict(named), list(zip(names[:-1], names[1:], strict=True)), metadata or {})

    # --- structure ------------------------------------------------------------------------

    def inputs(self, name: str) -> list[str]:
        """The nodes feeding `name`, in argument order."""
        return [a for a, b in self.edges if b == name]

    def consumers(self, name: str) -> list[str]:
        """The nodes `name` feeds."""
        return [b for a, b in self.edges if a == name]

    def input_name(self) -> str:
        return self.order()[0]

    def outputs(self) -> list[str]:
        """The nodes nothing consumes, in topological order (the network's outputs)."""
        fed = {a for a, _ in self.edges}
        return [n for n in self.order() if n not in fed]

    def is_chain(self) -> bool:
        return all(len(self.inputs(n)) <= 1 and len(self.consumers(n)) <= 1 for n in self.nodes)

    def order(self) -> list[str]:
        """Topological order (Kahn's algorithm; ties in the order the nodes were given), starting
        at the one Input node. Raises IRError on unknown names, a wrong number of inputs, a
        cycle, or nodes the input does not reach."""
        for a, b in self.edges:
            for n in (a, b):
                if n not in self.nodes:
                    raise IRError(f"edge ({a} -> {b}) names unknown node {n!r}")
        inputs = [n for n, node in self.nodes.items() if isinstance(node, Input)]
        if len(inputs) != 1:
            raise IRError(f"the graph needs exactly one Input node, found {inputs}")
        n_in = {n: 0 for n in self.nodes}
        for _, b in self.edges:
            n_in[b] += 1
        for n, node in self.nodes.items():
            want = 0 if isinstance(node, Input) else node.arity
            if n_in[n] != want:
                raise IRError(f"node {n!r} ({type(node).__name__}) takes {want} input(s), "
                              f"the edges give it {n_in[n]}")
        consumers: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            consumers[a].append(b)
        out, ready = [], collections.deque([inputs[0]])
        left = dict(n_in)
        while ready:  # one pass over the edges: a 10,000-node chain in milliseconds
            cur = ready.popleft()
            out.append(cur)
            for b in consumers[cur]:
                left[b] -= 1
                if left[b] == 0:
                    ready.append(b)
        if len(out) != len(self.nodes):
            stuck = sorted(n for n in self.nodes if n not in out)
            raise IRError(f"nodes not reached from the input (a cycle, or not connected): "
                          f"{stuck}")
        return out

    def shapes(self) -> dict[str, Shape]:
        """Per-sample output shape of every node; raises IRError naming a node that does not fit."""
        shapes: dict[str, Shape] = {}
        feeds: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            feeds[b].append(a)  # argument order kept, as inputs() gives it
        for name in self.order():
            node = self.nodes[name]
            try:
                out = (tuple(node.shape) if isinstance(node, Input)
                       else node.out_shape(*(shapes[p] for p in feeds[name])))
            except IRError as e:
                raise IRError(f"node {name!r} ({type(node).__name__}): {e}") from None
            shapes[name] = tuple(int(s) for s in out)
        return shapes

    def in_shapes(self, name: str) -> list[Shape]:
        """The per-sample shapes of the inputs of `name`, in argument order."""
        shapes = self.shapes()
        return [shapes[p] for p in self.inputs(name)]

    def ordered(self) -> list[tuple[str, Node]]:
        return [(n, self.nodes[n]) for n in self.order()]

    # --- rewriting (each returns a new graph with the same metadata) ------------------------

    def with_nodes(self, changed: dict[str, Node]) -> Graph:
        """The same wiring with some nodes swapped for new ones under the same names."""
        unknown = set(changed) - set(self.nodes)
        if unknown:
            raise IRError(f"no node(s) {sorted(unknown)} to replace")
        return Graph({n: changed.get(n, x) for n, x in self.nodes.items()}, list(self.edges),
                     dict(self.metadata))

    def splice(self, name: str, changed: dict[str, Node] | None = None) -> Graph:
        """Remove the one-input node `name`; whatever it fed is fed by its input instead.
        `changed`: nodes swapped for new ones at the same time (when removing `name` changes
        what they take, as when an Upsample is folded into the Dense behind it)."""
        (src,) = self.inputs(name)
        edges = []
        for a, b in self.edges:
            if b == name:
                continue
            edges.append((src, b) if a == name else (a, b))
        nodes = {n: (changed or {}).get(n, x) for n, x in self.nodes.items() if n != name}
        return Graph(nodes, edges, dict(self.metadata))

    def replace(self, named: list[tuple[str, Node]]) -> Graph:
        """The same node names with new nodes (wiring kept); a chain may also be rebuilt from a
        new list of nodes (the chain-only passes of older code)."""
        if {n for n, _ in named} == set(self.nodes) and len(named) == len(self.nodes):
            return self.with_nodes(dict(named))
        if not self.is_chain():
            raise IRError("replace() with a different set of nodes needs a chain graph")
        return Graph.chain(named, dict(self.metadata))
