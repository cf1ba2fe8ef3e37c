"""``python -m srl_agent.evaluation.harness_main ARGS``: the official ``swebench.harness.run_evaluation``,
unchanged, except that every container it creates carries srl-agent's labels (``srl-agent=1`` and
``$SRL_AGENT_LABELS``), so ``srl-agent sandbox gc`` and a test session's leak check find them too."""

from __future__ import annotations

import runpy

from docker.models.containers import ContainerCollection

from ..sandbox import container_labels

_create = ContainerCollection.create


def _labelled_create(self, image, command=None, **kwargs):
    labels = kwargs.get("labels") or {}
    if isinstance(labels, list):  # the SDK also takes a list of label names
        labels = dict.fromkeys(labels, "")
    kwargs["labels"] = {**container_labels(), **labels}
    return _create(self, image, command, **kwargs)


if __name__ == "__main__":
    ContainerCollection.create = _labelled_create
    runpy.run_module("swebench.harness.run_evaluation", run_name="__main__", alter_sys=True)
