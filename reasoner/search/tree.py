"""The search tree shared by beam search and MCTS: nodes are step prefixes.

Each node keeps the token ids of its whole prefix (prompt plus steps), so expanding it asks
the backend to continue exactly those ids; the backend's prefix store then reuses the keys and
values computed when the node's step was generated (no prefix is computed twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reasoner.records import Problem, Trajectory, Tree, TreeNode


@dataclass
class SearchTree:
    problem: Problem
    prompt: str
    nodes: list[TreeNode] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)  # token ids of each node's whole prefix
    texts: list[str] = field(default_factory=list)  # raw generated text of each node's step
    children: dict[int, list[int]] = field(default_factory=dict)
    logprob: list[float] = field(default_factory=list)  # summed token log-probability of the step
    value_sum: list[float] = field(default_factory=list)
    executions: list[list[dict]] = field(default_factory=list)  # code run in each node's step (tools)
    tokens: int = 0  # tokens generated in this tree

    @classmethod
    def start(cls, problem: Problem, prompt: str, prompt_ids: list[int]) -> SearchTree:
        tree = cls(problem, prompt)
        tree.nodes.append(TreeNode(id=0, parent=None, step="", token_start=len(prompt_ids), token_end=len(prompt_ids)))
        tree.ids.append(list(prompt_ids))
        tree.texts.append("")
        tree.logprob.append(0.0)
        tree.value_sum.append(0.0)
        tree.executions.append([])
        return tree

    def add(
        self,
        parent: int,
        text: str,
        token_ids: list[int],
        logprob: float,
        terminal: bool,
        prior: float = 1.0,
        executions: list[dict] | None = None,
    ) -> int:
        node = len(self.nodes)
        start = len(self.ids[parent])
        self.nodes.append(
            TreeNode(
                id=node,
                parent=parent,
                step=text.strip(),
                token_start=start,
                token_end=start + len(token_ids),
                prior=prior,
                terminal=terminal,
            )
        )
        self.ids.append(self.ids[parent] + list(token_ids))
        self.texts.append(text)
        self.logprob.append(logprob)
        self.value_sum.append(0.0)
        self.executions.append(list(executions or []))
        self.children.setdefault(parent, []).append(node)
        self.tokens += len(token_ids)
        return node

    def path(self, node: int) -> list[int]:
        """Node ids from the first step down to ``node`` (the root excluded)."""
        out = []
        while node != 0:
            out.append(node)
            node = self.nodes[node].parent
        return out[::-1]

    def depth(self, node: int) -> int:
        return len(self.path(node))

    def q(self, node: int) -> float:
        n = self.nodes[node]
        return self.value_sum[node] / n.visits if n.visits else 0.0

    def backup(self, node: int, value: float) -> None:
        while node is not None:
            self.nodes[node].visits += 1
            self.value_sum[node] += value
            self.nodes[node].value = self.q(node)
            node = self.nodes[node].parent

    def trajectory(self, node: int, tid: str, source: str) -> Trajectory:
        path = self.path(node)
        meta = {"node": node, "node_q": [self.q(i) if self.nodes[i].visits else None for i in path]}
        if any(self.executions[i] for i in path):
            meta["executions"] = [e for i in path for e in self.executions[i]]
        return Trajectory(
            id=tid,
            problem_id=self.problem.id,
            prompt=self.prompt,
            steps=[self.nodes[i].step for i in path],
            text="".join(self.texts[i] for i in path).strip(),
            source=source,
            logprob=sum(self.logprob[i] for i in path),
            num_tokens=len(self.ids[node]) - len(self.ids[0]),
            step_token_ends=[self.nodes[i].token_end - len(self.ids[0]) for i in path],
            meta=meta,
        )

    def record(self, source: str) -> Tree:
        return Tree(id=f"{self.problem.id}/{source}", problem_id=self.problem.id, source=source, nodes=self.nodes)


def is_terminal(text: str, finish_reason: str, depth: int, max_steps: int, pack) -> bool:
    """A step ends the solution at EOS, when the pack says it states the final answer, or at the
    depth limit. A step cut by the step-token cap is not an end: its continuation is the next step."""
    return finish_reason == "eos" or pack.is_final(text) or depth >= max_steps
